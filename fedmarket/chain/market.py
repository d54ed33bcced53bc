"""Typed bindings of MarketFactory and DataMarket over the chain adapter."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD as _DISCARD

from fedmarket.chain.adapter import Chain, TxResult
from fedmarket.store.cid import cid_from_digest, digest_of
from schemas.market import MarketSpec
from schemas.rounds import Submission

PHASES = ("Registration", "Training", "Settlement", "Settled", "Cancelled", "Aborted")


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def b32(value: str | bytes) -> bytes:
    raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class RoundState:
    round: int
    model_cid: str
    model_commitment: str
    deadline: int
    finalized: bool
    verified: bool
    submitted_mask: int
    benign_mask: int
    aggregate_cid: str | None
    aggregate_commitment: str


class FactoryClient:
    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.contract = chain.contract("MarketFactory", address)
        self.address = self.contract.address

    @classmethod
    def deploy(cls, chain: Chain, account: LocalAccount) -> tuple[FactoryClient, TxResult]:
        contract, result = chain.deploy(account, "MarketFactory")
        return cls(chain, contract.address), result

    def create_market(self, account: LocalAccount, spec: MarketSpec, deposit: int) -> tuple[MarketClient, TxResult]:
        deadline = self.chain.now() + spec.registration_window_s
        args = (
            digest_of(spec.task_cid),
            digest_of(spec.data_cid),
            b32(spec.data_commitment),
            Web3.to_checksum_address(spec.aggregator),
            b32(spec.aggregator_key),
            spec.trainers,
            spec.rounds,
            deadline,
            spec.round_duration_s,
            spec.aggregator_window_s,
            spec.participation_reward_wei,
            spec.aggregator_fee_wei,
            list(spec.schedule.thresholds_bps),
            list(spec.schedule.pools_wei),
            Web3.to_checksum_address(spec.round_verifier),
            Web3.to_checksum_address(spec.settlement_verifier),
        )
        result = self.chain.transact(account, self.contract.functions.createMarket(args), value=deposit)
        (event,) = self.contract.events.MarketCreated().process_receipt(result.receipt, errors=_DISCARD)
        return MarketClient(self.chain, event["args"]["market"]), result

    def markets_of(self, owner: str) -> list[str]:
        return list(self.chain.call(self.contract.functions.marketsOf(Web3.to_checksum_address(owner))))


class MarketClient:
    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.contract = chain.contract("DataMarket", address)
        self.address = self.contract.address
        self._f = self.contract.functions

    # ------------------------------------------------------------ transactions
    def register(self, account: LocalAccount, encryption_key: bytes, summary_cid: str) -> TxResult:
        return self.chain.transact(account, self._f.register(b32(encryption_key), digest_of(summary_cid)))

    def open_round(self, account: LocalAccount, model_cid: str, model_commitment: str) -> TxResult:
        return self.chain.transact(account, self._f.openRound(digest_of(model_cid), b32(model_commitment)))

    def submit(self, account: LocalAccount, round: int, cid: str, commitment: str) -> TxResult:
        return self.chain.transact(account, self._f.submit(round, digest_of(cid), b32(commitment)))

    def finalize_round(
        self, account: LocalAccount, round: int, aggregate_cid: str, aggregate_commitment: str, benign_mask: int, proof: bytes = b""
    ) -> TxResult:
        fn = self._f.finalizeRound(round, digest_of(aggregate_cid), b32(aggregate_commitment), benign_mask, proof)
        return self.chain.transact(account, fn)

    def settle(self, account: LocalAccount, accuracy_bps: int, contributions: list[int], proof: bytes = b"") -> TxResult:
        return self.chain.transact(account, self._f.settle(accuracy_bps, contributions, proof))

    def cancel(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.cancel())

    def force_settle(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.forceSettle())

    def withdraw(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.withdraw())

    # ------------------------------------------------------------ reads
    def phase(self) -> str:
        return PHASES[self.chain.call(self._f.phase())]

    def current_round(self) -> int:
        return int(self.chain.call(self._f.currentRound()))

    def trainers(self) -> list[str]:
        return list(self.chain.call(self._f.trainers()))

    def encryption_key(self, trainer: str) -> bytes:
        return bytes(self.chain.call(self._f.encryptionKeyOf(Web3.to_checksum_address(trainer))))

    def spec_cid(self) -> str:
        return str(cid_from_digest(bytes(self.chain.call(self._f.specCid()))))

    def data_cid(self) -> str:
        return str(cid_from_digest(bytes(self.chain.call(self._f.dataCid()))))

    def round_count(self) -> int:
        return int(self.chain.call(self._f.roundCount()))

    def aggregator(self) -> str:
        return self.chain.call(self._f.aggregator())

    def aggregator_key(self) -> bytes:
        return bytes(self.chain.call(self._f.aggregatorKey()))

    def owner(self) -> str:
        return self.chain.call(self._f.owner())

    def deposit(self) -> int:
        return int(self.chain.call(self._f.deposit()))

    def owed(self, account: str) -> int:
        return int(self.chain.call(self._f.owed(Web3.to_checksum_address(account))))

    def total_owed(self) -> int:
        return int(self.chain.call(self._f.totalOwed()))

    def benign_rounds(self, trainer: str) -> int:
        return int(self.chain.call(self._f.benignRoundsOf(Web3.to_checksum_address(trainer))))

    def round_verifier(self) -> str | None:
        address = self.chain.call(self._f.roundVerifier())
        return None if int(address, 16) == 0 else address

    def settlement_verifier(self) -> str | None:
        address = self.chain.call(self._f.settlementVerifier())
        return None if int(address, 16) == 0 else address

    def round_state(self, round: int) -> RoundState:
        r = self.chain.call(self._f.getRound(round))
        aggregate = bytes(r[7])
        return RoundState(
            round=round,
            model_cid=str(cid_from_digest(bytes(r[0]))) if any(r[0]) else "",
            model_commitment=hex32(r[1]),
            deadline=int(r[2]),
            finalized=bool(r[3]),
            verified=bool(r[4]),
            submitted_mask=int(r[5]),
            benign_mask=int(r[6]),
            aggregate_cid=str(cid_from_digest(aggregate)) if any(aggregate) else None,
            aggregate_commitment=hex32(r[8]),
        )

    def submissions(self, round: int) -> list[Submission]:
        state = self.round_state(round)
        out = []
        for index, trainer in enumerate(self.trainers()):
            if state.submitted_mask >> index & 1:
                cid, commitment = self.chain.call(self._f.getSubmission(round, index))
                out.append(
                    Submission(
                        round=round,
                        trainer=trainer,
                        index=index,
                        cid=str(cid_from_digest(bytes(cid))),
                        commitment=hex32(commitment),
                    )
                )
        return out

    def submission_gas(self, round: int, from_block: int) -> int:
        """Gas the trainers spent on `submit` in this round, read from the events' receipts."""
        logs = self.contract.events.UpdateSubmitted().get_logs(
            from_block=from_block, argument_filters={"round": round}
        )
        return sum(int(self.chain.w3.eth.get_transaction_receipt(log["transactionHash"])["gasUsed"]) for log in logs)

    def balance(self) -> int:
        return self.chain.balance(self.address)
