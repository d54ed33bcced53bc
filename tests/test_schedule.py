"""The scheduled deployment (prefect.yaml `advance-all`): it advances every market under way that
this aggregator runs, and leaves the others; where it and an event-triggered run open the same
round at once, one transaction opens it and both runs report it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fedmarket.chain import FactoryClient, MarketClient
from fedmarket.errors import ConfigError
from fedmarket.simulation.enrol import enrol
from fedmarket_flows.listener import listener_for
from fedmarket_flows.market import advance_all_flow
from fedmarket_schemas.market import ModelConfig, TaskSpec
from fedmarket_tasks.chain_ops import finalize_round, open_round
from tests.helpers import create_market, party, small_spec, verifier_factory


def markets(platform):
    """Through one factory: two markets of this process's aggregator, one in Training and one
    still in Registration, and one in Training of another aggregator."""
    factory, _ = verifier_factory(platform)
    task = str(platform.store.put(TaskSpec(model=ModelConfig()).model_dump_json().encode()))
    training, _, aggregator, _, _ = create_market(platform, factory=factory, task_cid=task)
    registering, *_ = create_market(platform, factory=factory, task_cid=task, register=False)
    spec = small_spec(platform, party(platform, "other-aggregator"), task_cid=task)
    elsewhere, _ = factory.create_market(party(platform, "owner").account, spec, spec.max_payout())
    enrol(elsewhere, [party(platform, "trainer", i) for i in range(3)], str(platform.store.put(b"{}")))
    platform.own = aggregator
    return factory, training, registering, elsewhere, task


def test_advance_all_opens_the_rounds_due_in_this_aggregators_markets_only(platform):
    factory, training, registering, elsewhere, _ = markets(platform)
    assert factory.markets_aggregated_by(platform.me.address) == [training.address, registering.address]

    done = advance_all_flow(factory.address)

    assert done == {training.address: "opened-round-1", registering.address: "nothing"}
    assert training.current_round() == 1 and elsewhere.current_round() == 0
    assert advance_all_flow(factory.address) == {training.address: "nothing", registering.address: "nothing"}


def test_advance_all_reads_the_factory_once_then_only_the_blocks_since(platform, monkeypatch):
    factory, training, registering, _, task = markets(platform)
    advance_all_flow(factory.address)
    (checkpoint,) = platform.settings.state_dir.glob("markets-*.json")
    since = json.loads(checkpoint.read_text())["next_block"]
    scanned = []
    real = FactoryClient.markets_aggregated_by

    def counted(self, aggregator, from_block=0, to_block="latest"):
        scanned.append(from_block)
        return real(self, aggregator, from_block, to_block)

    monkeypatch.setattr(FactoryClient, "markets_aggregated_by", counted)
    newer, *_ = create_market(platform, factory=factory, task_cid=task)

    done = advance_all_flow(factory.address)

    assert scanned == [since] and since > 1
    assert list(done) == [training.address, registering.address, newer.address]
    assert done[newer.address] == "opened-round-1"


def test_the_listener_and_advance_all_start_at_the_factorys_block(platform, monkeypatch):
    """FEDMARKET_FACTORY_FROM_BLOCK: neither reads the logs of the blocks before it."""
    factory, *_, task = markets(platform)
    start = platform.chain.head() + 1
    newer, *_ = create_market(platform, factory=factory, task_cid=task)
    monkeypatch.setattr(platform.settings, "factory_from_block", start)

    assert advance_all_flow(factory.address) == {newer.address: "opened-round-1"}  # the older ones unseen
    assert listener_for(factory.address, [], follow_all=False).checkpoint.next_block == start


def test_advance_all_needs_a_factory(platform):
    platform.own = party(platform, "aggregator")
    with pytest.raises(ConfigError, match="FEDMARKET_FACTORY_ADDRESS"):
        advance_all_flow()


def test_a_round_opened_by_another_run_between_check_and_send_is_that_runs_transaction(platform, monkeypatch):
    _, market, *_ = markets(platform)
    model = str(platform.store.put(b"model"))
    first = open_round(market.address, platform.me.address, 1, model, "0x" + "11" * 32)
    # this run read the chain before the other run's transaction landed: it sends, and is refused
    stale = [0]
    real = MarketClient.current_round
    monkeypatch.setattr(MarketClient, "current_round", lambda self: stale.pop() if stale else real(self))

    second = open_round(market.address, platform.me.address, 1, model, "0x" + "11" * 32)

    assert second.tx_hash == first.tx_hash
    assert len(market.events("RoundOpened", round=1)) == 1


def test_a_round_finalized_by_another_run_between_check_and_send_is_that_runs_transaction(platform, monkeypatch):
    """A secure round has two triggered runs (tasks/secure.py): where both get to finalize, the
    one refused on chain returns the other's transaction instead of failing."""
    _, market, *_ = markets(platform)
    store, me = platform.store, platform.me.address
    open_round(market.address, me, 1, str(store.put(b"model")), "0x" + "11" * 32)
    aggregate = str(store.put(b"aggregate"))
    platform.chain.advance_time(market.round_state(1).deadline - platform.chain.now() + 1)
    first = finalize_round(market.address, me, 1, aggregate, "0x" + "22" * 32, 0, b"")
    stale = [dataclasses.replace(market.round_state(1), finalized=False)]  # what the other run read
    real = MarketClient.round_state
    monkeypatch.setattr(MarketClient, "round_state", lambda self, r: stale.pop() if stale else real(self, r))

    second = finalize_round(market.address, me, 1, aggregate, "0x" + "22" * 32, 0, b"")

    assert second.tx_hash == first.tx_hash
    assert len(market.events("RoundFinalized", round=1)) == 1
