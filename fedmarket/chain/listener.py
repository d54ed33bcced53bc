"""Follow markets on chain and turn their logs into named, identified events.

The listener reads logs over bounded block ranges (at most `max_blocks` per poll, `confirmations`
behind the head), hands each range's events to a sink, and only then advances a checkpoint that
it persists atomically. A listener killed at any point therefore re-reads the unfinished range
when it restarts: no event is lost. Every event has a deterministic id (chain id, transaction,
log index, or for derived events market and round), so the sink can drop what it already
delivered: no event is delivered twice (fedmarket/eventsink.py).

Besides one event per log it derives what the aggregator acts on:
`fedmarket.round.submissions-complete` (every active trainer submitted),
`fedmarket.round.deadline-passed` and `fedmarket.market.rounds-complete` (last round finalized).
It also follows the secure-aggregation boards of the markets' factories, and derives
`fedmarket.secagg.keys-complete` (every active trainer posted keys),
`fedmarket.secagg.reveals-complete` (every active trainer revealed its shares for a round) and
`fedmarket.secagg.reveals-grace-passed` (a majority revealed `reveal_grace_s` of chain time ago),
so that no run waits on a worker for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import event_abi_to_log_topic
from pydantic import BaseModel
from web3 import Web3

from fedmarket.chain.adapter import Chain
from fedmarket.chain.market import PHASES, MarketClient
from fedmarket.errors import ConfigError, ProtocolError

NAMESPACE = uuid.UUID("5b0c1f3e-2f4d-4f0a-9d53-6d61726b6574")

# chain event -> Prefect event name
EVENT_NAMES = {
    "MarketCreated": "fedmarket.market.created",
    "MarketInitialized": "fedmarket.market.initialized",
    "TrainerRegistered": "fedmarket.trainer.registered",
    "SeedRevealStarted": "fedmarket.market.seed-reveal-started",
    "SeedRevealed": "fedmarket.trainer.seed-revealed",
    "TrainingStarted": "fedmarket.market.training-started",
    "SplitSeedFixed": "fedmarket.market.split-seed-fixed",
    "RoundOpened": "fedmarket.round.opened",
    "UpdateSubmitted": "fedmarket.round.update-submitted",
    "SubmissionExcluded": "fedmarket.round.submission-excluded",
    "RoundFinalized": "fedmarket.round.finalized",
    "Settled": "fedmarket.market.settled",
    "MarketCancelled": "fedmarket.market.cancelled",
    "MarketAborted": "fedmarket.market.aborted",
    "Withdrawn": "fedmarket.account.withdrawn",
}
BOARD_EVENT_NAMES = {
    "KeysPosted": "fedmarket.secagg.keys-posted",
    "Complained": "fedmarket.secagg.complained",
    "Answered": "fedmarket.secagg.answered",
    "RevealsOpened": "fedmarket.secagg.reveals-opened",
    "SharesRevealed": "fedmarket.secagg.shares-revealed",
}
KEYS_COMPLETE = "fedmarket.secagg.keys-complete"
REVEALS_COMPLETE = "fedmarket.secagg.reveals-complete"
REVEALS_GRACE_PASSED = "fedmarket.secagg.reveals-grace-passed"
SUBMISSIONS_COMPLETE = "fedmarket.round.submissions-complete"
DEADLINE_PASSED = "fedmarket.round.deadline-passed"
ROUNDS_COMPLETE = "fedmarket.market.rounds-complete"


@dataclass(frozen=True)
class ChainEvent:
    id: uuid.UUID
    name: str
    market: str
    block: int
    round: int | None = None
    tx_hash: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def payload(self) -> dict[str, Any]:
        return {"market": self.market, "round": self.round, "block": self.block, "tx": self.tx_hash, "args": self.args}


Sink = Callable[[list[ChainEvent]], None]  # returns once every event is delivered, else raises


class Checkpoint(BaseModel):
    chain_id: int
    next_block: int = 0
    markets: list[str] = []
    rounds_triggered: list[str] = []  # "market/round" with submissions-complete or deadline-passed delivered
    reveal_majorities: dict[str, int] = {}  # "market/round" -> chain time a majority had revealed by
    reveals_triggered: list[str] = []  # "market/round" with reveals-complete or reveals-grace-passed delivered

    def save(self, path: Path) -> None:
        """Atomically: a crash leaves the old checkpoint or the new one, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json())
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)  # JSON readers lose integers past 2^53 (wei amounts)
    return value


class ChainListener:
    """Follows the markets of a factory (all, or only those with `aggregator`) and extra markets."""

    def __init__(
        self,
        chain: Chain,
        state_path: Path,
        *,
        factory: str | None = None,
        markets: list[str] = (),
        aggregator: str | None = None,
        max_blocks: int = 500,
        confirmations: int = 0,
        start_block: int = 0,
        reveal_grace_s: float = 30.0,
    ):
        if factory is None and not markets:
            raise ConfigError("the listener needs a factory address (FEDMARKET_FACTORY_ADDRESS) or market addresses")
        self.chain = chain
        self.state_path = Path(state_path)
        self.factory = chain.contract("MarketFactory", factory) if factory else None
        self.aggregator = Web3.to_checksum_address(aggregator) if aggregator else None
        self.max_blocks, self.confirmations = max_blocks, confirmations
        self.reveal_grace_s = reveal_grace_s
        self._boards: dict[str, str] = {}  # factory -> its board
        self._factories: dict[str, str] = {}  # market -> its factory, where no factory is followed
        self.checkpoint = self._load(start_block)
        for market in markets:
            self._follow(market)
        self._decoders = {
            event_abi_to_log_topic(entry): (entry["name"], getattr(contract.events, entry["name"])())
            for contract in (
                chain.decoder(chain.abi(name)) for name in ("DataMarket", "MarketFactory", "SecureAggregation")
            )
            for entry in contract.abi
            if entry["type"] == "event"
        }

    def _load(self, start_block: int) -> Checkpoint:
        if self.state_path.is_file():
            checkpoint = Checkpoint.model_validate_json(self.state_path.read_text())
            if checkpoint.chain_id != self.chain.chain_id:
                raise ConfigError(
                    f"checkpoint {self.state_path} is for chain {checkpoint.chain_id}, not {self.chain.chain_id}"
                )
            return checkpoint
        return Checkpoint(chain_id=self.chain.chain_id, next_block=start_block)

    def _follow(self, market: str) -> bool:
        market = Web3.to_checksum_address(market)
        if market in self.checkpoint.markets:
            return False
        self.checkpoint.markets.append(market)
        return True

    # ------------------------------------------------------------ one poll
    def poll(self, sink: Sink) -> int:
        """Read the next block range, deliver its events, then advance the checkpoint. Returns the
        number of events delivered."""
        head = self.chain.head() - self.confirmations
        start = self.checkpoint.next_block
        events: list[ChainEvent] = []
        end = start - 1
        if start <= head:
            end = min(head, start + self.max_blocks - 1)
            events = self._range(start, end)
        # one trigger per round: no deadline-passed for a round whose submissions completed
        self.checkpoint.rounds_triggered += [f"{e.market}/{e.round}" for e in events if e.name == SUBMISSIONS_COMPLETE]
        self.checkpoint.reveals_triggered += [f"{e.market}/{e.round}" for e in events if e.name == REVEALS_COMPLETE]
        events += self._deadlines(max(end, start - 1))
        events += self._reveal_graces(max(end, start - 1))
        if events:
            sink(events)
        self.checkpoint.next_block = end + 1
        self.checkpoint.rounds_triggered += [f"{e.market}/{e.round}" for e in events if e.name == DEADLINE_PASSED]
        self.checkpoint.reveals_triggered += [f"{e.market}/{e.round}" for e in events if e.name == REVEALS_GRACE_PASSED]
        self.checkpoint.save(self.state_path)
        return len(events)

    def _range(self, start: int, end: int) -> list[ChainEvent]:
        addresses = list(self.checkpoint.markets)
        if self.factory is not None:
            addresses.append(self.factory.address)
        logs = self._logs(addresses + self._board_addresses(), start, end)
        # markets created in this range: their own logs of this range too (the market initializes
        # in the same transaction that announces it), and their board's if it is new
        new = [m for m in self._created(logs) if self._follow(m)]
        if new:
            known = set(self._board_addresses())
            logs += self._logs(new + [b for b in self._board_addresses() if b not in known], start, end)
        logs.sort(key=lambda log: (log["blockNumber"], log["logIndex"]))
        events: list[ChainEvent] = []
        last: dict[tuple[str, str, int], int] = {}  # (chain event, market, round) -> position in events
        for log in logs:
            for event in self._translate(log):
                events.append(event)
                if event.name in (EVENT_NAMES["UpdateSubmitted"], *BOARD_EVENT_NAMES.values()):
                    last[(event.name, event.market, event.round or 0)] = len(events)
        # each derived trigger goes right after the event that completed it
        for (name, market, round), position in sorted(last.items(), key=lambda kv: -kv[1]):
            if (derived := self._derived(name, market, round, end)) is not None:
                events.insert(position, derived)
        return events

    def _board_addresses(self) -> list[str]:
        """The boards of the followed markets' factories (one read per new factory)."""
        if self.factory is not None:
            factories = [self.factory.address]
        else:
            for market in self.checkpoint.markets:
                if market not in self._factories:
                    self._factories[market] = MarketClient(self.chain, market).factory()
            factories = list(self._factories.values())
        for factory in factories:
            if factory not in self._boards:
                contract = self.chain.contract("MarketFactory", factory)
                self._boards[factory] = self.chain.call(contract.functions.secureAggregation())
        return sorted(set(self._boards.values()))

    def _derived(self, name: str, market: str, round: int, end: int) -> ChainEvent | None:
        if name == EVENT_NAMES["UpdateSubmitted"]:
            return self._completion(market, round, end)
        if name == BOARD_EVENT_NAMES["KeysPosted"]:
            return self._keys_complete(market, end)
        if name == BOARD_EVENT_NAMES["SharesRevealed"]:
            return self._reveals(market, round, end)
        return None

    def _logs(self, addresses: list[str], start: int, end: int) -> list:
        if not addresses:
            return []
        return self.chain.logs(addresses, start, end)

    def _created(self, logs: list) -> list[str]:
        if self.factory is None:
            return []
        created = []
        for log in logs:
            if log["address"] == self.factory.address:
                args = self.factory.events.MarketCreated().process_log(log)["args"]
                if self.aggregator is None or args["aggregator"] == self.aggregator:
                    created.append(args["market"])
        return created

    def _decode(self, log) -> tuple[str, dict]:
        found = self._decoders.get(bytes(log["topics"][0]))
        if found is None:
            raise ProtocolError(f"log of {log['address']} at block {log['blockNumber']} is not a fedmarket event")
        name, decoder = found
        return name, dict(decoder.process_log(log)["args"])

    def _translate(self, log) -> list[ChainEvent]:
        chain_name, args = self._decode(log)
        board = log["address"] in self._boards.values()
        name = (BOARD_EVENT_NAMES if board else EVENT_NAMES).get(chain_name)
        if name is None:  # OpenZeppelin's Initialized: no news beyond MarketInitialized
            return []
        market = args["market"] if chain_name == "MarketCreated" or board else log["address"]
        if market not in self.checkpoint.markets:
            return []  # another aggregator's market announced by the factory
        tx = "0x" + bytes(log["transactionHash"]).hex()
        ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{tx}/{log['logIndex']}")
        round = int(args["round"]) if "round" in args else None
        event = ChainEvent(ident, name, market, int(log["blockNumber"]), round, tx, _json_safe(args))
        if chain_name == "RoundFinalized" and round == MarketClient(self.chain, market).round_count():
            done = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{market}/rounds-complete")
            return [event, ChainEvent(done, ROUNDS_COMPLETE, market, event.block, round, tx)]
        return [event]

    def _completion(self, market: str, round: int, end: int) -> ChainEvent | None:
        """submissions-complete if every active trainer had submitted by the range's last block,
        read there, so a re-read of the same range derives the same event."""
        client = MarketClient(self.chain, market)
        submitted = client.chain.call(client.contract.functions.submittedMask(round), block=end)
        active = client.chain.call(client.contract.functions.activeMask(), block=end)
        if submitted != active:
            return None
        ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{market}/{round}/submissions-complete")
        return ChainEvent(ident, SUBMISSIONS_COMPLETE, market, end, round)

    def _board(self, market: str):
        client = MarketClient(self.chain, market)
        factory = self.factory.address if self.factory is not None else self._factories[market]
        return client, self.chain.contract("SecureAggregation", self._boards[factory])

    def _keys_complete(self, market: str, end: int) -> ChainEvent | None:
        """keys-complete if every active trainer had posted keys by the range's last block."""
        client, board = self._board(market)
        keyed = self.chain.call(board.functions.keyedMask(market), block=end)
        active = self.chain.call(client.contract.functions.activeMask(), block=end)
        if keyed & active != active:
            return None
        ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{market}/keys-complete")
        return ChainEvent(ident, KEYS_COMPLETE, market, end)

    def _reveals(self, market: str, round: int, end: int) -> ChainEvent | None:
        """reveals-complete if every active trainer had revealed its shares for `round` by the
        range's last block; else the chain time a majority had revealed by, noted for the grace."""
        key = f"{market}/{round}"
        if key in self.checkpoint.reveals_triggered:
            return None  # one trigger per round: its grace passed already
        client, board = self._board(market)
        revealed = int(self.chain.call(board.functions.roundReveals(market, round), block=end)[3])
        active = int(self.chain.call(client.contract.functions.activeMask(), block=end))
        if revealed & active == active:
            ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{market}/{round}/reveals-complete")
            return ChainEvent(ident, REVEALS_COMPLETE, market, end, round)
        majority = active.bit_count() // 2 + 1  # the sharing threshold (secagg.threshold_for, a layer above)
        if revealed.bit_count() >= majority and key not in self.checkpoint.reveal_majorities:
            self.checkpoint.reveal_majorities[key] = self.chain.timestamp(end)
        return None

    def _reveal_graces(self, block: int) -> list[ChainEvent]:
        """A reveals-grace-passed event for each round whose reveals reached a majority
        `reveal_grace_s` of chain time before `block` and did not complete."""
        if block < 0 or not self.checkpoint.reveal_majorities:
            return []
        now = self.chain.timestamp(block)
        events = []
        for key, since in self.checkpoint.reveal_majorities.items():
            if key not in self.checkpoint.reveals_triggered and now >= since + self.reveal_grace_s:
                market, round = key.rsplit("/", 1)
                ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{key}/reveals-grace-passed")
                events.append(ChainEvent(ident, REVEALS_GRACE_PASSED, market, block, int(round)))
        return events

    def _deadlines(self, block: int) -> list[ChainEvent]:
        """A deadline-passed event for each followed market whose open round is past its deadline
        at `block` without being finalized (some trainer did not submit)."""
        if block < 0:
            return []
        now = self.chain.timestamp(block)
        events = []
        for market in self.checkpoint.markets:
            client = MarketClient(self.chain, market)
            if not self.chain.code(client.address, block):
                continue  # not created yet at this block
            if client.chain.call(client.contract.functions.phase(), block=block) != PHASES.index("Training"):
                continue
            round = int(client.chain.call(client.contract.functions.currentRound(), block=block))
            if round == 0 or f"{market}/{round}" in self.checkpoint.rounds_triggered:
                continue
            deadline, finalized, _, _ = client.chain.call(client.contract.functions.getRound(round), block=block)
            if not finalized and now > int(deadline):
                ident = uuid.uuid5(NAMESPACE, f"{self.chain.chain_id}/{market}/{round}/deadline-passed")
                events.append(ChainEvent(ident, DEADLINE_PASSED, market, block, round))
        return events
