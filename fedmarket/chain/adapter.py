"""One adapter over web3 for the in-process EVM and any JSON-RPC node.

Transactions are signed locally by each party's key (the way separate parties run for real) and
gas-estimated first, so a reverting call fails before it is sent: no nonce is used and no state
changes. Reverts surface as eth-tester's `TransactionFailed` in process and as web3's
`ContractLogicError` on a node; both become `ContractRevertError` with the decoded custom error.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from fedmarket.chain.artifacts import error_abis, load_artifact
from fedmarket.errors import ChainError, ChainUnavailableError, ContractRevertError
from fedmarket.settings import Settings

log = logging.getLogger(__name__)

CONTRACTS = ("DataMarket", "MarketFactory")
_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any


class Chain:
    """A connection plus what fedmarket needs of it: deploy, transact, call, decode reverts."""

    def __init__(self, w3: Web3, artifacts_dir: Path, *, tester: Any = None):
        self.w3 = w3
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
            w3 = Web3(Web3.HTTPProvider(settings.chain_rpc_url, request_kwargs={"timeout": 30}))
            return cls(w3, settings.artifacts_dir)
        from eth_tester import EthereumTester
        from web3 import EthereumTesterProvider

        from fedmarket.chain.inprocess import IndexedPyEVMBackend

        tester = EthereumTester(IndexedPyEVMBackend())
        return cls(Web3(EthereumTesterProvider(tester)), settings.artifacts_dir, tester=tester)

    @property
    def in_process(self) -> bool:
        return self._tester is not None

    @property
    def description(self) -> str:
        if self.in_process:
            return f"in-process EVM (py-evm), chain id {self.chain_id}"
        return f"{self.w3.provider.endpoint_uri}, chain id {self.chain_id}"  # type: ignore[attr-defined]

    # ------------------------------------------------------------ contracts
    def abi(self, name: str) -> list:
        return load_artifact(self.artifacts_dir, name)["abi"]

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(self.artifacts_dir, name)["abi"])

    def deploy(self, account: LocalAccount, name: str, *args: Any) -> tuple[Contract, TxResult]:
        return self.deploy_artifact(account, load_artifact(self.artifacts_dir, name), *args)

    def deploy_artifact(self, account: LocalAccount, artifact: dict, *args: Any) -> tuple[Contract, TxResult]:
        """Deploy compiled code from outside contracts/artifacts (an EZKL-generated verifier)."""
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        result = self.transact(account, factory.constructor(*args), label=f"{artifact.get('contractName', 'contract')}.constructor")
        address = result.receipt["contractAddress"]
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact["abi"]), result

    def has_code(self, address: str) -> bool:
        return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def transact(self, account: LocalAccount, fn: ContractFunction, *, value: int = 0, label: str | None = None) -> TxResult:
        """Estimate, sign, send and wait. A transaction mined reverted is estimated again on the
        state it ran on: if it now needs more gas than it was given, it is sent once more. Its
        estimate ran on a state that another party's transaction changed before it was mined (of
        four trainers revealing at once, the one mined last also starts training: 84k gas where
        it was estimated as a middle one, 56k). If it now reverts, that revert is the error."""
        label = label or fn.fn_name
        tx_hash, gas, receipt = self._send(account, fn, value, label)
        if receipt["status"] != 1 and self._estimate(account, fn, value, label) > gas:
            log.warning("%s ran out of its %d gas on a state changed since its estimate: sending it again", label, gas)
            tx_hash, gas, receipt = self._send(account, fn, value, label)
        if receipt["status"] != 1:
            raise ContractRevertError(label, "Reverted", {"tx": tx_hash.hex(), "gas_used": receipt["gasUsed"], "gas": gas})
        return TxResult("0x" + tx_hash.hex().removeprefix("0x"), receipt["gasUsed"], receipt["blockNumber"], receipt)

    def _estimate(self, account: LocalAccount, fn: ContractFunction, value: int, label: str) -> int:
        try:
            return fn.estimate_gas({"from": account.address, "value": value, "chainId": self.chain_id})
        except Exception as exc:  # noqa: BLE001
            raise self._translate(label, exc) from exc

    def _send(self, account: LocalAccount, fn: ContractFunction, value: int, label: str):
        base = {"from": account.address, "value": value, "chainId": self.chain_id}
        try:
            base["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            base["gas"] = int(fn.estimate_gas(base) * 1.2) + 10_000
            signed = account.sign_transaction(fn.build_transaction(base))
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            return tx_hash, base["gas"], self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:  # noqa: BLE001 - every backend error is translated here
            raise self._translate(label, exc) from exc

    def call(self, fn: ContractFunction, *, sender: str | None = None, block: int | str = "latest") -> Any:
        try:
            return fn.call({"from": sender} if sender else {}, block_identifier=block)
        except Exception as exc:  # noqa: BLE001
            raise self._translate(fn.fn_name, exc) from exc

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
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward: simulation and tests only."""
        if self.in_process:
            self._tester.time_travel(self.now() + seconds)
        else:
            self.w3.provider.make_request("evm_increaseTime", [seconds])
            self.w3.provider.make_request("evm_mine", [])

    def fund(self, address: str, wei: int) -> None:
        """Send ether from the dev chain's first unlocked account (eth-tester, anvil)."""
        funder = self.w3.eth.accounts[0]
        tx_hash = self.w3.eth.send_transaction({"from": funder, "to": address, "value": wei})
        self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))


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
        literal = text[len(marker):]
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
