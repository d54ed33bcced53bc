"""The chain listener: chain logs become named events with deterministic ids, no event is lost
across a restart, and the Prefect sink stores each event exactly once."""

from __future__ import annotations

import pytest

from fedmarket.chain import FactoryClient
from fedmarket.chain.listener import DEADLINE_PASSED, ROUNDS_COMPLETE, SUBMISSIONS_COMPLETE, ChainListener
from fedmarket.eventsink import PrefectEventSink
from tests.helpers import cid_of, create_market, party, small_spec


class Recorder:
    def __init__(self, fail_after_calls: int | None = None):
        self.batches: list[list] = []
        self.fail_after_calls = fail_after_calls

    def __call__(self, events):
        self.batches.append(list(events))
        if self.fail_after_calls is not None and len(self.batches) >= self.fail_after_calls:
            raise RuntimeError("listener killed after delivering, before its checkpoint")

    @property
    def events(self):
        return [e for batch in self.batches for e in batch]


def play_round(platform, market, aggregator, members, round, *, submit=None):
    market.open_round(aggregator.account, cid_of(platform, b"model %d" % round), "0x" + "02" * 32)
    for t in members[: submit if submit is not None else len(members)]:
        market.submit(
            t.account, round, cid_of(platform, b"update %d %s" % (round, t.address.encode())), "0x" + "03" * 32
        )


def drain(listener, sink, polls=50):
    for _ in range(polls):
        listener.poll(sink)


def test_logs_become_named_events_and_triggers(platform, tmp_path):
    market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=2)
    play_round(platform, market, aggregator, members, 1)
    market.finalize_round(aggregator.account, 1, cid_of(platform, b"agg 1"), "0x" + "04" * 32, 0b111)
    play_round(platform, market, aggregator, members, 2)
    market.finalize_round(aggregator.account, 2, cid_of(platform, b"agg 2"), "0x" + "04" * 32, 0b111)

    sink = Recorder()
    drain(ChainListener(platform.chain, tmp_path / "cp.json", markets=[market.address], max_blocks=3), sink)
    names = [e.name for e in sink.events]
    assert names.count("fedmarket.trainer.registered") == 3
    assert names.count("fedmarket.round.update-submitted") == 6
    assert names.count(SUBMISSIONS_COMPLETE) == 2  # once per round, after its last submission
    assert names.index(SUBMISSIONS_COMPLETE) > names.index("fedmarket.round.update-submitted") + 1
    assert names.count(ROUNDS_COMPLETE) == 1 and names[-1] == ROUNDS_COMPLETE
    assert DEADLINE_PASSED not in names
    complete = [e for e in sink.events if e.name == SUBMISSIONS_COMPLETE]
    assert [e.round for e in complete] == [1, 2] and all(e.market == market.address for e in complete)
    assert len({e.id for e in sink.events}) == len(sink.events)

    again = Recorder()  # a second listener from scratch derives the very same ids
    drain(ChainListener(platform.chain, tmp_path / "other.json", markets=[market.address], max_blocks=1000), again)
    assert [e.id for e in again.events] == [e.id for e in sink.events]


def test_factory_markets_are_followed_from_their_first_log(platform, tmp_path):
    owner, aggregator, other = party(platform, "owner"), party(platform, "aggregator"), party(platform, "aggregator", 1)
    factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    mine, _ = factory.create_market(
        owner.account, small_spec(platform, aggregator), small_spec(platform, aggregator).max_payout()
    )
    factory.create_market(owner.account, small_spec(platform, other), small_spec(platform, other).max_payout())

    sink = Recorder()
    drain(
        ChainListener(platform.chain, tmp_path / "cp.json", factory=factory.address, aggregator=aggregator.address),
        sink,
        3,
    )
    assert {e.market for e in sink.events} == {mine.address}
    assert [e.name for e in sink.events] == ["fedmarket.market.created", "fedmarket.market.initialized"]


def test_deadline_passed_once_when_a_trainer_is_missing(platform, tmp_path):
    market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=2)
    play_round(platform, market, aggregator, members, 1, submit=2)
    sink = Recorder()
    listener = ChainListener(platform.chain, tmp_path / "cp.json", markets=[market.address])
    drain(listener, sink, 3)
    assert SUBMISSIONS_COMPLETE not in [e.name for e in sink.events] and DEADLINE_PASSED not in [
        e.name for e in sink.events
    ]
    platform.chain.advance_time(market.round_state(1).deadline - platform.chain.now() + 10)
    drain(listener, sink, 3)
    passed = [e for e in sink.events if e.name == DEADLINE_PASSED]
    assert [(e.market, e.round) for e in passed] == [(market.address, 1)]


def test_no_event_is_lost_when_the_listener_dies_before_its_checkpoint(platform, tmp_path):
    market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=2)
    play_round(platform, market, aggregator, members, 1)
    reference = Recorder()
    drain(ChainListener(platform.chain, tmp_path / "ref.json", markets=[market.address], max_blocks=2), reference)

    state = tmp_path / "cp.json"
    delivered = []
    for _ in range(4):  # die after the second delivery of each run, then restart from the checkpoint
        sink = Recorder(fail_after_calls=2)
        listener = ChainListener(platform.chain, state, markets=[market.address], max_blocks=2)
        with pytest.raises(RuntimeError, match="killed"):
            drain(listener, sink)
        delivered += sink.events
    drain(ChainListener(platform.chain, state, markets=[market.address], max_blocks=2), sink := Recorder())
    delivered += sink.events
    assert {e.id for e in delivered} == {e.id for e in reference.events}  # nothing lost
    assert len(delivered) > len(reference.events)  # at least once: the sink must drop repeats


def test_prefect_sink_stores_each_event_once(platform, tmp_path):
    from prefect.client.orchestration import get_client

    market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=1)
    play_round(platform, market, aggregator, members, 1)
    recorder = Recorder()
    drain(ChainListener(platform.chain, tmp_path / "cp.json", markets=[market.address]), recorder, 2)
    events = recorder.events

    first = PrefectEventSink(platform.chain.chain_id)
    first(events[:5])  # a listener that died after delivering part of its range
    second = PrefectEventSink(platform.chain.chain_id)
    second(events)  # ... restarts and delivers the whole range again
    assert first.emitted == 5 and second.emitted == len(events) - 5
    with get_client(sync_client=True) as client:
        assert PrefectEventSink.stored(client, [e.id for e in events]) == {e.id for e in events}
        from prefect.events.filters import EventFilter, EventResourceFilter

        page = client.read_events(
            EventFilter(resource=EventResourceFilter(id=[f"fedmarket.market.{market.address}"])), limit=50
        )
    assert sorted(str(e.id) for e in page.events) == sorted(str(e.id) for e in events)  # no duplicates stored
    complete = next(e for e in page.events if e.event == SUBMISSIONS_COMPLETE)
    assert complete.payload["market"] == market.address and complete.payload["round"] == 1
    assert complete.resource["fedmarket.round"] == "1"


def test_a_secure_markets_board_gives_keys_and_reveals_triggers_once(platform, tmp_path):
    import numpy as np

    from fedmarket.chain.listener import KEYS_COMPLETE, REVEALS_COMPLETE, REVEALS_GRACE_PASSED
    from fedmarket.secagg import MaskContext, onchain

    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, aggregator, trainers, spec = create_market(platform, trainers=3, rounds=2, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    listener = ChainListener(platform.chain, tmp_path / "cp.json", markets=[market.address], reveal_grace_s=60)
    sink = Recorder()

    def names():
        return [e.name for e in sink.events]

    for t in trainers[:2]:
        onchain.post_bundle(store, market, board, t, rounds=spec.rounds)
    drain(listener, sink, 3)
    assert names().count("fedmarket.secagg.keys-posted") == 2 and KEYS_COMPLETE not in names()
    onchain.post_bundle(store, market, board, trainers[2], rounds=spec.rounds)
    drain(listener, sink, 3)
    assert names().count(KEYS_COMPLETE) == 1 and names()[-1] == KEYS_COMPLETE
    assert {e.market for e in sink.events} == {market.address}

    market.open_round(aggregator.account, cid_of(platform, b"global 1"), "0x" + "03" * 32)
    keys = onchain.bundles(store, market, board, board.keyed_mask(market.address), 1)
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    for i, t in enumerate(trainers):
        raw = onchain.masked_bytes(np.zeros(8), party=t, index=i, keys=keys, context=context)
        market.submit(t.account, 1, str(store.put(raw)), "0x" + "22" * 32)
    board.open_reveals(aggregator.account, market.address, 1)
    for t in trainers[:2]:  # a majority of 3
        onchain.reveal(store, market, board, t, 1)
    drain(listener, sink, 3)
    assert names().count("fedmarket.secagg.shares-revealed") == 2
    assert REVEALS_COMPLETE not in names() and REVEALS_GRACE_PASSED not in names()
    platform.chain.advance_time(61)
    drain(listener, sink, 3)
    graced = [e for e in sink.events if e.name == REVEALS_GRACE_PASSED]
    assert [(e.market, e.round) for e in graced] == [(market.address, 1)]
    onchain.reveal(store, market, board, trainers[2], 1)  # the last holder, after the grace
    drain(listener, sink, 3)
    assert REVEALS_COMPLETE not in names() and names().count(REVEALS_GRACE_PASSED) == 1

    # round 2: every holder reveals within the grace
    market.finalize_round(aggregator.account, 1, cid_of(platform, b"agg 1"), "0x" + "04" * 32, 0b111)
    market.open_round(aggregator.account, cid_of(platform, b"global 2"), "0x" + "03" * 32)
    context = MaskContext(platform.chain.chain_id, market.address, 2)
    for i, t in enumerate(trainers):
        raw = onchain.masked_bytes(np.zeros(8), party=t, index=i, keys=keys, context=context)
        market.submit(t.account, 2, str(store.put(raw)), "0x" + "22" * 32)
    board.open_reveals(aggregator.account, market.address, 2)
    for t in trainers:
        onchain.reveal(store, market, board, t, 2)
    drain(listener, sink, 3)
    complete = [e for e in sink.events if e.name == REVEALS_COMPLETE]
    assert [(e.market, e.round) for e in complete] == [(market.address, 2)]
    assert names()[-1] == REVEALS_COMPLETE  # right after the reveal that completed the round
