"""Typed binding of the secure-aggregation board (contracts/src/SecureAggregation.sol): one per
factory, keyed by market."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedmarket.chain.adapter import Chain, TxResult
from fedmarket.store.cid import cid_text, digest_of


@dataclass(frozen=True)
class RoundReveals:
    """What the board fixed for one round: bit i of each mask is trainer i."""

    open: bool
    participants: int
    survivors: int
    revealed: int


class BoardClient:
    def __init__(self, chain: Chain, address: str, block: int | str = "latest"):
        self.chain = chain
        self.contract = chain.contract("SecureAggregation", address)
        self.address = self.contract.address
        self.block = block

    def at(self, block: int | str) -> BoardClient:
        """This board as of `block` (a market's reads at one block pair with its board's)."""
        return BoardClient(self.chain, self.address, block)

    def post_keys(self, account: LocalAccount, market: str, cid: str) -> TxResult:
        return self.chain.transact(account, self.contract.functions.postKeys(_address(market), digest_of(cid)))

    def open_reveals(self, account: LocalAccount, market: str, round: int) -> TxResult:
        return self.chain.transact(account, self.contract.functions.openReveals(_address(market), round))

    def reveal_shares(self, account: LocalAccount, market: str, round: int, cid: str) -> TxResult:
        fn = self.contract.functions.revealShares(_address(market), round, digest_of(cid))
        return self.chain.transact(account, fn)

    def complain(self, account: LocalAccount, market: str, dealer: int) -> TxResult:
        return self.chain.transact(account, self.contract.functions.complain(_address(market), dealer))

    def answer(self, account: LocalAccount, market: str, holder: int, cid: str) -> TxResult:
        fn = self.contract.functions.answer(_address(market), holder, digest_of(cid))
        return self.chain.transact(account, fn)

    def complained_mask(self, market: str, dealer: int) -> int:
        fn = self.contract.functions.complainedMask(_address(market), dealer)
        return int(self.chain.call(fn, block=self.block))

    def answered_mask(self, market: str, dealer: int) -> int:
        fn = self.contract.functions.answeredMask(_address(market), dealer)
        return int(self.chain.call(fn, block=self.block))

    def complaints(self, market: str, from_block: int) -> dict[tuple[int, int], int]:
        """(dealer, holder) -> the first round the complaint counts for."""
        logs = self.chain.events(self.contract, "Complained", from_block, self.block, market=_address(market))
        return {
            (int(log["args"]["dealer"]), int(log["args"]["holder"])): int(log["args"]["firstRound"]) for log in logs
        }

    def answers(self, market: str, from_block: int) -> dict[tuple[int, int], tuple[str, int]]:
        """(dealer, holder) -> (CID of the dealer's answer, the first round it counts for)."""
        logs = self.chain.events(self.contract, "Answered", from_block, self.block, market=_address(market))
        return {
            (int(log["args"]["dealer"]), int(log["args"]["holder"])): (
                cid_text(bytes(log["args"]["cid"])),
                int(log["args"]["firstRound"]),
            )
            for log in logs
        }

    def keyed_mask(self, market: str) -> int:
        return int(self.chain.call(self.contract.functions.keyedMask(_address(market)), block=self.block))

    def round_reveals(self, market: str, round: int) -> RoundReveals:
        fn = self.contract.functions.roundReveals(_address(market), round)
        is_open, participants, survivors, revealed = self.chain.call(fn, block=self.block)
        return RoundReveals(bool(is_open), int(participants), int(survivors), int(revealed))

    def key_bundles(self, market: str, from_block: int) -> dict[int, tuple[str, int]]:
        """Trainer index -> (CID of its key bundle, first round it masks in)."""
        logs = self.chain.events(self.contract, "KeysPosted", from_block, self.block, market=_address(market))
        return {
            int(log["args"]["index"]): (cid_text(bytes(log["args"]["cid"])), int(log["args"]["firstRound"]))
            for log in logs
        }

    def reveals_opened(self, market: str, round: int, from_block: int) -> TxResult | None:
        """The transaction that opened `round`'s reveals, or None."""
        logs = self.chain.events(
            self.contract, "RevealsOpened", from_block, self.block, market=_address(market), round=round
        )
        return self.chain.receipt(logs[-1]["transactionHash"]) if logs else None

    def reveal_blocks(self, market: str, round: int, from_block: int) -> list[int]:
        """The blocks of `round`'s share reveals, in chain order."""
        logs = self.chain.events(
            self.contract, "SharesRevealed", from_block, self.block, market=_address(market), round=round
        )
        return sorted(int(log["blockNumber"]) for log in logs)

    def share_reveals(self, market: str, round: int, from_block: int) -> dict[int, str]:
        """Holder index -> CID of its share reveal for `round`."""
        logs = self.chain.events(
            self.contract, "SharesRevealed", from_block, self.block, market=_address(market), round=round
        )
        return {int(log["args"]["index"]): cid_text(bytes(log["args"]["cid"])) for log in logs}


def _address(value: str) -> str:
    return Web3.to_checksum_address(value)
