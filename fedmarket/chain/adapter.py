"""One adapter over web3 for the in-process EVM and any JSON-RPC node.

Transactions are signed locally by each party's key (the way separate parties run for real) and
gas-estimated first, so a reverting call fails before it is sent: no nonce is used and no state
changes. Reverts surface as eth-tester's `TransactionFailed` in process and as web3's
`ContractLogicError` on a node; both become `ContractRevertError` with the decoded custom error.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import collapse_if_tuple, event_abi_to_log_topic, function_abi_to_4byte_selector
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.datastructures import AttributeDict
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3Exception
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from fedmarket.chain.artifacts import error_abis, load_artifact
from fedmarket.errors import ChainError, ChainUnavailableError, ContractRevertError
from fedmarket.settings import Settings

log = logging.getLogger(__name__)

CONTRACTS = ("DataMarket", "MarketFactory", "SecureAggregation", "VerifierFactory")
_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
LOG_PAGE_BLOCKS = 10_000  # public nodes cap one eth_getLogs at 1,000 to 10,000 blocks


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any


class Chain:
    """A connection plus what fedmarket needs of it: deploy, transact, call, decode reverts."""

    def __init__(self, w3: Web3, artifacts_dir: Path, *, tester: Any = None, log_page_blocks: int = LOG_PAGE_BLOCKS):
        self._w3 = w3
        self.log_page_blocks = log_page_blocks
        self.artifacts_dir = Path(artifacts_dir)
        self._tester = tester  # eth_tester.EthereumTester when in process
        self._errors = error_abis(self.artifacts_dir, CONTRACTS)
        try:
            self.chain_id = w3.eth.chain_id
        except (OSError, Web3Exception) as exc:
            raise ChainUnavailableError(f"cannot reach the chain: {exc}") from exc

    @classmethod
    def connect(cls, settings: Settings) -> Chain:
        if settings.chain_rpc_url:
            provider = Web3.HTTPProvider(
                settings.chain_rpc_url,
                request_kwargs={"timeout": 30},
                exception_retry_configuration=_retries_within(settings.chain_unreachable_s),
            )
            w3 = Web3(provider)
            return cls(w3, settings.artifacts_dir, log_page_blocks=settings.chain_log_page_blocks)
        # py-evm is imported only by a process that runs the chain itself
        from eth_tester import EthereumTester
        from web3 import EthereumTesterProvider

        from fedmarket.chain.inprocess import IndexedPyEVMBackend

        tester = EthereumTester(IndexedPyEVMBackend())
        return cls(
            Web3(EthereumTesterProvider(tester)),
            settings.artifacts_dir,
            tester=tester,
            log_page_blocks=settings.chain_log_page_blocks,
        )

    @property
    def in_process(self) -> bool:
        return self._tester is not None

    @property
    def _mined_in(self) -> str | None:
        """The block a transaction is estimated in: the one it will be mined in, not the last one
        (block.number differs, and the split seed needs a block after its seed block). eth-tester
        estimates there already and takes no block identifier."""
        return None if self.in_process else "pending"

    @property
    def description(self) -> str:
        if self.in_process:
            return f"in-process EVM (py-evm), chain id {self.chain_id}"
        return f"{self._w3.provider.endpoint_uri}, chain id {self.chain_id}"  # type: ignore[attr-defined]

    # ------------------------------------------------------------ contracts
    def abi(self, name: str) -> list:
        return load_artifact(self.artifacts_dir, name)["abi"]

    def contract(self, name: str, address: str) -> Contract:
        return self._w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact(self.artifacts_dir, name)["abi"]
        )

    def deploy(self, account: LocalAccount, name: str, *args: Any) -> tuple[Contract, TxResult]:
        return self.deploy_artifact(account, load_artifact(self.artifacts_dir, name), *args)

    def deploy_artifact(self, account: LocalAccount, artifact: dict, *args: Any) -> tuple[Contract, TxResult]:
        """Deploy compiled code from outside contracts/artifacts (an EZKL-generated verifier)."""
        factory = self._w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        result = self.transact(
            account, factory.constructor(*args), label=f"{artifact.get('contractName', 'contract')}.constructor"
        )
        address = result.receipt["contractAddress"]
        return self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact["abi"]), result

    def runtime_code_of(self, name: str) -> bytes:
        """The deployed code a contract of contracts/artifacts has (no immutables: DataMarket,
        VerifierFactory)."""
        return bytes.fromhex(load_artifact(self.artifacts_dir, name)["deployedBytecode"].removeprefix("0x"))

    def contract_at(self, abi: list, address: str) -> Contract:
        """A contract whose ABI is not among contracts/artifacts (an EZKL-generated verifier)."""
        return self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)

    def decoder(self, abi: list) -> Contract:
        """An address-less contract, to decode logs of any contract with this ABI."""
        return self._w3.eth.contract(abi=abi)

    def has_code(self, address: str) -> bool:
        return len(self.code(address)) > 0

    # ------------------------------------------------------------ reads
    def _read(self, label: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise self._translate(label, exc) from exc

    def head(self) -> int:
        return int(self._read("eth_blockNumber", lambda: self._w3.eth.block_number))

    def timestamp(self, block: int | str = "latest") -> int:
        return int(self._read("eth_getBlockByNumber", lambda: self._w3.eth.get_block(block)["timestamp"]))

    @cached_property
    def instance(self) -> str:
        """This chain's genesis hash, 8 hex digits: two chains (two in-process EVMs, two anvil
        runs) that give a market the same address and chain id still differ here."""
        return self.block_hash(0).hex().removeprefix("0x")[:8]

    def block_hash(self, block: int) -> bytes:
        return bytes(self._read("eth_getBlockByNumber", lambda: self._w3.eth.get_block(block)["hash"]))

    def code(self, address: str, block: int | str = "latest") -> bytes:
        checksum = Web3.to_checksum_address(address)
        return bytes(self._read("eth_getCode", lambda: self._w3.eth.get_code(checksum, block_identifier=block)))

    def receipt(self, tx_hash: str | bytes) -> TxResult:
        receipt = self._read("eth_getTransactionReceipt", lambda: self._w3.eth.get_transaction_receipt(tx_hash))
        hex_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        return TxResult(hex_hash, int(receipt["gasUsed"]), int(receipt["blockNumber"]), receipt)

    def transaction_input(self, tx_hash: str | bytes) -> bytes:
        """The calldata of a mined transaction (proofs live there only, not in state or events)."""
        tx = self._read("eth_getTransactionByHash", lambda: self._w3.eth.get_transaction(tx_hash))
        return bytes(tx["input"])

    def _pages(self, from_block: int, to_block: int | str) -> Iterator[tuple[int, int]]:
        end = self.head() if to_block == "latest" else int(to_block)
        for start in range(int(from_block), end + 1, self.log_page_blocks):
            yield start, min(end, start + self.log_page_blocks - 1)

    def logs(self, addresses: list[str], from_block: int, to_block: int | str = "latest") -> list:
        """Every log of `addresses` in [from_block, to_block], in chain order, read in pages of
        at most `log_page_blocks` blocks (public nodes cap the range of one eth_getLogs)."""
        if not addresses:
            return []
        checksums = [Web3.to_checksum_address(a) for a in addresses]
        out: list = []
        for start, end in self._pages(from_block, to_block):
            query = {"address": checksums, "fromBlock": start, "toBlock": end}
            out += self._read("eth_getLogs", lambda q=query: self._w3.eth.get_logs(q))
        return sorted(out, key=lambda log: (log["blockNumber"], log["logIndex"]))

    def events(self, contract: Contract, name: str, from_block: int, to_block: int | str = "latest", **filters) -> list:
        """The decoded `name` events of `contract` in [from_block, to_block] whose indexed
        arguments equal `filters`, in chain order, read in pages as `logs`. On a node the logs
        are asked for by topic and decoded with eth-abi, as web3 decodes them (the same fields,
        addresses checksummed): web3's own decoder costs milliseconds a log, and a round reads
        its submissions' logs several times."""
        if self.in_process:
            event = getattr(contract.events, name)()
            out: list = []
            for start, end in self._pages(from_block, to_block):
                out += self._read(
                    f"{name} logs",
                    lambda a=start, b=end: event.get_logs(from_block=a, to_block=b, argument_filters=filters or None),
                )
            return out
        topic, indexed, data = self._event_signature(contract, name)
        unknown = set(filters) - {a["name"] for a in indexed}
        if unknown:
            raise ChainError(f"{name} logs: {sorted(unknown)} are not indexed arguments of the event")
        topics = [topic] + [
            "0x" + abi_encode([a["type"]], [filters[a["name"]]]).hex() if a["name"] in filters else None
            for a in indexed
        ]
        while topics[-1] is None:
            topics.pop()
        out = []
        for start, end in self._pages(from_block, to_block):
            query = {"address": contract.address, "fromBlock": hex(start), "toBlock": hex(end), "topics": topics}
            reply = self._read(f"{name} logs", lambda q=query: self._w3.provider.make_request("eth_getLogs", [q]))
            if "error" in reply or not isinstance(reply.get("result"), list):
                raise ChainError(f"{name} logs: the node answered {reply.get('error', reply)!r:.200}")
            out += [self._event_data(name, raw, indexed, data) for raw in reply["result"]]
        return out

    @staticmethod
    def _event_signature(contract: Contract, name: str):
        """`name`'s topic and its indexed and data arguments (ABI entries), from `contract`'s ABI."""
        entries = [e for e in contract.abi if e.get("type") == "event" and e.get("name") == name]
        if len(entries) != 1:
            raise ChainError(f"{name}: {len(entries)} events of that name in the contract's ABI, expected one")
        entry = entries[0]
        indexed = [a for a in entry["inputs"] if a["indexed"]]
        if any(a["type"] in ("bytes", "string", "tuple") or a["type"].endswith("]") for a in indexed):
            raise ChainError(f"{name}: an indexed argument of a dynamic type is a hash, not a value")
        return "0x" + event_abi_to_log_topic(entry).hex(), indexed, [a for a in entry["inputs"] if not a["indexed"]]

    @staticmethod
    def _event_data(name: str, raw: dict, indexed: list, data: list) -> AttributeDict:
        """One raw log as web3's EventData."""
        try:
            values = [abi_decode([a["type"]], bytes.fromhex(v[2:]))[0] for a, v in zip(indexed, raw["topics"][1:])]
            values += abi_decode([collapse_if_tuple(a) for a in data], bytes.fromhex(raw["data"][2:]))
        except (ValueError, KeyError, TypeError, DecodingError) as exc:
            raise ChainError(f"{name} logs: a log does not decode as the event: {exc}") from None
        return AttributeDict(
            {
                "args": AttributeDict({a["name"]: _checksummed(a, v) for a, v in zip(indexed + data, values)}),
                "event": name,
                "logIndex": int(raw["logIndex"], 16),
                "transactionIndex": int(raw["transactionIndex"], 16),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "address": Web3.to_checksum_address(raw["address"]),
                "blockHash": HexBytes(raw["blockHash"]),
                "blockNumber": int(raw["blockNumber"], 16),
            }
        )

    def transact(
        self, account: LocalAccount, fn: ContractFunction, *, value: int = 0, label: str | None = None
    ) -> TxResult:
        """Estimate, sign, send and wait. A transaction mined reverted is estimated again on the
        state it ran on: if it now needs more gas than it was given, it is sent once more. Its
        estimate ran on a state that another party's transaction changed before it was mined (the
        last of several trainers revealing at once also starts training, which costs more than the
        reveal it was estimated as). If it now reverts, that revert is the error."""
        label = label or fn.fn_name
        tx_hash, gas, receipt = self._send(account, fn, value, label)
        if receipt["status"] != 1 and self._estimate(account, fn, value, label) > gas:
            log.warning("%s ran out of its %d gas on a state changed since its estimate: sending it again", label, gas)
            tx_hash, gas, receipt = self._send(account, fn, value, label)
        if receipt["status"] != 1:
            raise ContractRevertError(
                label, "Reverted", {"tx": tx_hash.hex(), "gas_used": receipt["gasUsed"], "gas": gas}
            )
        return TxResult("0x" + tx_hash.hex().removeprefix("0x"), receipt["gasUsed"], receipt["blockNumber"], receipt)

    def _estimate(self, account: LocalAccount, fn: ContractFunction, value: int, label: str) -> int:
        try:
            return fn.estimate_gas({"from": account.address, "value": value, "chainId": self.chain_id}, self._mined_in)
        except Exception as exc:
            raise self._translate(label, exc) from exc

    def _send(self, account: LocalAccount, fn: ContractFunction, value: int, label: str):
        base = {"from": account.address, "value": value, "chainId": self.chain_id}
        try:
            base["nonce"] = self._w3.eth.get_transaction_count(account.address, "pending")
            base["gas"] = int(fn.estimate_gas(base, self._mined_in) * 1.2) + 10_000
            signed = account.sign_transaction(fn.build_transaction(base))
            tx_hash = self._sent(signed)
            return tx_hash, base["gas"], self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            raise self._translate(label, exc) from exc

    def _sent(self, signed) -> bytes:
        """Send a signed transaction; its hash. A reply lost after the node took it makes web3 send
        it again, and the node refuses the copy ("already known", "nonce too low"): if the node
        has the transaction, it was sent."""
        try:
            return self._w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception:  # any refusal: checked against the node's own record
            if not self._has(signed.hash):
                raise
            return signed.hash

    def _has(self, tx_hash: bytes) -> bool:
        try:
            self._w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    def call(self, fn: ContractFunction, *, sender: str | None = None, block: int | str = "latest") -> Any:
        try:
            return fn.call({"from": sender} if sender else {}, block_identifier=block)
        except Exception as exc:
            raise self._translate(fn.fn_name, exc) from exc

    def call_many(self, contract: Contract, name: str, args: list[tuple], *, block: int | str = "latest") -> list[Any]:
        """`name` of `contract` called read-only once per tuple of `args`, in order: one JSON-RPC
        batch on a node (a round's per-trainer reads are otherwise hundreds of round trips), one by
        one in process (eth-tester has no batches, and no round trips to save). The batch is
        encoded and decoded with eth-abi: web3 validates a contract's whole ABI, hashing every
        selector, for each call it builds, which costs far more than the batch's round trip."""
        if self.in_process or len(args) < 2:
            return [self.call(getattr(contract.functions, name)(*a), block=block) for a in args]
        selector, inputs, outputs = self._signature(contract, name)
        tag = block if isinstance(block, str) else hex(block)
        requests_ = [
            ("eth_call", [{"to": contract.address, "data": "0x" + (selector + abi_encode(inputs, a)).hex()}, tag])
            for a in args
        ]
        label = f"batch of {len(args)} calls to {name}"
        try:
            replies = self._w3.provider.make_batch_request(requests_)
        except Exception as exc:
            raise self._translate(label, exc) from exc
        if not isinstance(replies, list) or len(replies) != len(args):
            raise ChainError(f"{label}: the node answered {replies!r:.200}")
        return [self._decoded(label, reply, outputs) for reply in replies]  # web3 orders them by id

    def receipts(self, tx_hashes: list[str | bytes]) -> list[TxResult]:
        """The receipts of mined transactions, in order, in one JSON-RPC batch on a node."""
        if self.in_process or len(tx_hashes) < 2:
            return [self.receipt(h) for h in tx_hashes]
        hashes = [h if isinstance(h, str) else "0x" + bytes(h).hex() for h in tx_hashes]
        label = f"batch of {len(hashes)} receipts"
        try:
            replies = self._w3.provider.make_batch_request([("eth_getTransactionReceipt", [h]) for h in hashes])
        except Exception as exc:
            raise self._translate(label, exc) from exc
        if not isinstance(replies, list) or len(replies) != len(hashes):
            raise ChainError(f"{label}: the node answered {replies!r:.200}")
        out = []
        for reply in replies:
            receipt = reply.get("result")
            if not receipt:
                raise ChainError(f"{label}: {reply.get('error') or 'a transaction is not mined'}")
            gas, block = int(receipt["gasUsed"], 16), int(receipt["blockNumber"], 16)
            out.append(TxResult(receipt["transactionHash"], gas, block, receipt))
        return out

    def _signature(self, contract: Contract, name: str) -> tuple[bytes, list[str], list[str]]:
        """`name`'s selector and its input and output types, from `contract`'s ABI."""
        entries = [e for e in contract.abi if e.get("type") == "function" and e.get("name") == name]
        if len(entries) != 1:
            raise ChainError(f"{name}: {len(entries)} functions of that name in the contract's ABI, expected one")
        entry = entries[0]
        inputs = [collapse_if_tuple(i) for i in entry["inputs"]]
        return function_abi_to_4byte_selector(entry), inputs, [collapse_if_tuple(o) for o in entry["outputs"]]

    def _decoded(self, label: str, reply: dict, outputs: list[str]) -> Any:
        if "error" in reply:
            data = reply["error"].get("data")
            if isinstance(data, str) and data.startswith("0x"):
                raise self._decode_revert(label, bytes.fromhex(data[2:]))
            raise ChainError(f"{label} failed: {reply['error'].get('message', reply['error'])}")
        values = abi_decode(outputs, bytes.fromhex(reply["result"].removeprefix("0x")))
        values = [Web3.to_checksum_address(v) if t == "address" else v for t, v in zip(outputs, values)]
        return values[0] if len(values) == 1 else tuple(values)

    def _translate(self, label: str, exc: Exception) -> ChainError:
        if isinstance(exc, ChainError):
            return exc
        data = _revert_data(exc)
        if data is not None:
            return self._decode_revert(label, data)
        if isinstance(exc, (ConnectionError, OSError, TimeExhausted)):
            return ChainUnavailableError(f"{label}: node unavailable: {exc}")
        return ChainError(f"{label} failed: {exc}")

    def _decode_revert(self, label: str, data: bytes) -> ContractRevertError:
        selector, payload = data[:4], data[4:]
        if selector == _ERROR_STRING:
            return ContractRevertError(label, "Error", {"message": abi_decode(["string"], payload)[0]})
        if selector == _PANIC:
            return ContractRevertError(label, "Panic", {"code": hex(abi_decode(["uint256"], payload)[0])})
        entry = self._errors.get(selector)
        if entry is None:
            return ContractRevertError(label, "UnknownError", {"data": "0x" + data.hex()})
        types = [i["type"] for i in entry["inputs"]]
        values = abi_decode(types, payload) if types else ()
        args = {
            i["name"]: Web3.to_checksum_address(v) if i["type"] == "address" else _plain(v)
            for i, v in zip(entry["inputs"], values)
        }
        return ContractRevertError(label, entry["name"], args)

    # ------------------------------------------------------------ time and funds (dev chains)
    def now(self) -> int:
        return self.timestamp("latest")

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward: simulation and tests only."""
        if self.in_process:
            self._tester.time_travel(self.now() + seconds)
        else:
            self._w3.provider.make_request("evm_increaseTime", [seconds])
            self._w3.provider.make_request("evm_mine", [])

    def snapshot(self) -> str:
        """A node's state to come back to (anvil's evm_snapshot): tests only."""
        return self._w3.provider.make_request("evm_snapshot", [])["result"]

    def revert_to(self, snapshot: str) -> None:
        if not self._w3.provider.make_request("evm_revert", [snapshot])["result"]:
            raise ChainError(f"the node could not revert to snapshot {snapshot}")

    def fund(self, address: str, wei: int) -> None:
        """Send ether from the dev chain's first unlocked account (eth-tester, anvil)."""
        try:
            funder = self._w3.eth.accounts[0]
            tx_hash = self._w3.eth.send_transaction({"from": funder, "to": address, "value": wei})
            self._w3.eth.wait_for_transaction_receipt(tx_hash)
        except Exception as exc:  # a refusal (a funder short of ether) or a node away: named, one line
            raise self._translate(f"funding {address} with {wei} wei", exc) from exc

    def balance(self, address: str, block: int | str = "latest") -> int:
        return int(self._w3.eth.get_balance(Web3.to_checksum_address(address), block_identifier=block))


def _retries_within(budget_s: float, first_s: float = 0.125) -> ExceptionRetryConfiguration:
    """web3's retries of a request that cannot connect to the node (its default read-only methods
    and raw transactions, which are idempotent), waiting `first_s` doubling, for at least
    `budget_s` in all: a node restarting is waited for; one that stays away is unavailable."""
    tries = 1
    while first_s * (2 ** (tries - 1) - 1) < budget_s:
        tries += 1
    return ExceptionRetryConfiguration(errors=(requests.ConnectionError,), retries=tries, backoff_factor=first_s)


def account_from_key(private_key: str | bytes) -> LocalAccount:
    return Account.from_key(private_key)


def _revert_data(exc: Exception) -> bytes | None:
    if isinstance(exc, ContractLogicError) and exc.data:
        data = exc.data if isinstance(exc.data, str) else None
        if data and data.startswith("0x"):
            return bytes.fromhex(data[2:])
    text = str(exc.args[0]) if exc.args else ""
    marker = "execution reverted: "
    if type(exc).__name__ == "TransactionFailed" and text.startswith(marker):
        literal = text[len(marker) :]
        try:
            value = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            return literal.encode()  # a plain reason string
        return value if isinstance(value, bytes) else str(value).encode()
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _checksummed(param: dict, value: Any) -> Any:
    """A decoded ABI value as web3 returns it: addresses checksummed, structs named, arrays lists."""
    kind = param["type"]
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [_checksummed(inner, v) for v in value]
    if kind == "tuple":
        return AttributeDict({c["name"]: _checksummed(c, v) for c, v in zip(param["components"], value)})
    return Web3.to_checksum_address(value) if kind == "address" else value
