"""A round flow killed at each step and run again completes the round without recomputing a
finished step and without sending a transaction that already landed (anvil, a Prefect server,
the aggregator in a separate process that is killed)."""

from __future__ import annotations

import functools
import json
from collections import Counter

import numpy as np
import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from typer.testing import CliRunner

import fedmarket_flows.round as round_module
import fedmarket_tasks.load as load_module
from fedmarket.context import Platform, use_platform
from fedmarket.errors import StoreUnavailableError
from fedmarket.market_context import market_context
from fedmarket.ml.updates import decode_update
from fedmarket.settings import Settings
from fedmarket_cli import app
from fedmarket_flows.round import round_flow
from fedmarket_tasks.cache import round_key
from tests.digits_market import digits_market, submit_round
from tests.kill_round import KILLED, run_killed

STEPS = ["fetch", "detect", "aggregate", "evaluate"]  # the cached steps, in order
KILL_POINTS = [*STEPS, "store", "finalize", "finalized", "report"]


@pytest.fixture(scope="module")
def world(anvil_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    platform = Platform.from_settings(Settings(chain_rpc_url=anvil_url, store_dir=root / "blocks"))
    with use_platform(platform):
        market, aggregator, trainers, task = digits_market(platform, "resume", trainers=3, rounds=len(KILL_POINTS) + 2)
        yield platform, market, aggregator, trainers, task


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_round_killed_at_each_step_resumes(world, kill_at, monkeypatch):
    platform, market, aggregator, trainers, task = world
    round = KILL_POINTS.index(kill_at) + 1
    with use_platform(platform):
        submit_round(market, aggregator, trainers, task, round)
        killed = run_killed(kill_at, market.address, round, platform.settings, aggregator)
        assert killed.returncode == KILLED, killed.stdout + killed.stderr
        landed = market.last_event("RoundFinalized", round=round)
        assert (landed is not None) == (kill_at in ("finalized", "report"))

        calls = Counter()
        for module, name, round_of in [
            (load_module, "fetch_updates", lambda a, k: a[2]),
            (round_module, "detect_outliers", lambda a, k: a[0].round),
            (round_module, "aggregate", lambda a, k: a[0].round),
            (round_module, "evaluate", lambda a, k: round),
        ]:
            step = getattr(module, name)
            monkeypatch.setattr(step, "fn", _counting(step.fn, name, round_of, calls, round))
        report = round_flow(market.address, round, aggregator.address)

    finalized = market.contract.events.RoundFinalized().get_logs(from_block=0, argument_filters={"round": round})
    assert len(finalized) == 1  # never sent twice
    assert report.tx_hashes["finalizeRound"] == "0x" + bytes(finalized[0]["transactionHash"]).hex()
    assert market.round_state(round).finalized and report.benign_mask == market.round_state(round).benign_mask
    names = ["fetch_updates", "detect_outliers", "aggregate", "evaluate"]
    done_before = STEPS.index(kill_at) if kill_at in STEPS else len(STEPS)
    assert [calls[n] for n in names] == [0] * done_before + [1] * (len(STEPS) - done_before)


def _counting(fn, name, round_of, calls, round):
    @functools.wraps(fn)  # Prefect binds parameters by the wrapped function's signature
    def counted(*args, **kwargs):
        if round_of(args, kwargs) == round:
            calls[name] += 1
        return fn(*args, **kwargs)

    return counted


def test_heavy_steps_run_on_dask(world):
    """FEDMARKET_DASK_ADDRESS=local: detect, aggregate and evaluate run on a Dask cluster, with
    the same result as the float rule (three honest updates: their mean)."""
    platform, market, aggregator, trainers, task = world
    round = len(KILL_POINTS) + 1
    with use_platform(platform):
        locals_ = submit_round(market, aggregator, trainers, task, round)
        runner = round_module.task_runner_for("local")
        assert type(runner).__name__ == "DaskTaskRunner"
        report = round_module._round_flow.with_options(task_runner=runner)(market.address, round, aggregator.address)
        aggregate = decode_update(platform.store.get(report.aggregate_cid), task.model)
    assert report.benign_mask == 0b111 and report.flagged == []
    np.testing.assert_allclose(aggregate, locals_.mean(axis=0), atol=1e-6)


def test_a_store_outage_mid_fetch_fails_the_round_and_blames_no_trainer(world, monkeypatch):
    """The store goes away after the first ciphertext is read: the fetch step is retried, then
    the run fails; no trainer is recorded as rejected and nothing is cached, so once the store
    is back the next run completes the round with everyone kept."""
    platform, market, aggregator, trainers, task = world
    round = len(KILL_POINTS) + 2
    real_get = platform.store._get_block
    reads = []

    def going_away(cid):
        if str(cid) in ciphertexts:
            reads.append(str(cid))
            if len(reads) > 1:  # the first ciphertext came through, then the store went away
                raise StoreUnavailableError("the store went away")
        return real_get(cid)

    with use_platform(platform):
        submit_round(market, aggregator, trainers, task, round)
        ciphertexts = {s.cid for s in market.submissions(round)}
        monkeypatch.setattr(platform.store, "_get_block", going_away)
        with pytest.raises(StoreUnavailableError):
            round_flow(market.address, round, aggregator.address)
        assert len(reads) > 2  # the fetch step retried before giving up
        assert not market.round_state(round).finalized
        monkeypatch.setattr(platform.store, "_get_block", real_get)
        report = round_flow(market.address, round, aggregator.address)
    assert report.flagged == [] and report.benign_mask == 0b111


def test_prune_refuses_a_market_under_way_and_when_forced_deletes_its_results(world):
    """Every round above persisted sealed results; `aggregator prune` refuses the market until
    it is settled, and with --force deletes each round's results and Prefect's records of them."""
    platform, market, _, _, _ = world
    context = market_context(market, platform.store)
    keys = [round_key(market, r, context) for r in range(1, market.current_round() + 1)]
    results = platform.settings.results_dir
    assert all((results / k).is_dir() for k in keys)
    with use_platform(platform):
        refused = CliRunner().invoke(app, ["aggregator", "prune", "--market", market.address])
        assert refused.exit_code == 1 and "not settled: prune it with --force" in refused.output
        forced = CliRunner().invoke(app, ["aggregator", "prune", "--market", market.address, "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["files"] > 2 * len(keys)
    assert not any((results / k).exists() for k in keys)
    assert not any(PREFECT_LOCAL_STORAGE_PATH.value().glob(f"*-{keys[0]}*"))
