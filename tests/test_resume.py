"""A round flow killed at each step and run again completes the round without recomputing a
finished step and without sending a transaction that already landed (anvil, a Prefect server,
the aggregator in a separate process that is killed)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH
from typer.testing import CliRunner

import fedmarket_flows.round as round_module
import fedmarket_tasks.load as load_module
from fedmarket.chain import FactoryClient
from fedmarket.commitments import commit
from fedmarket.context import Platform, use_platform
from fedmarket.crypto import private_key_bytes
from fedmarket.errors import StoreUnavailableError
from fedmarket.market_context import market_context
from fedmarket.ml.data import encode_dataset, load_digits_dataset, owner_split
from fedmarket.ml.training import initial_model
from fedmarket.ml.updates import decode_update
from fedmarket.settings import Settings
from fedmarket.simulation.enrol import enrol
from fedmarket_cli import app
from fedmarket_flows.market import open_next_round
from fedmarket_flows.round import round_flow
from fedmarket_schemas.market import MarketSpec, ModelConfig, RewardSchedule, TaskSpec
from fedmarket_tasks.cache import round_key
from fedmarket_tasks.trainer import seal_and_store
from tests.helpers import REPO_ROOT, party
from tests.kill_round import KILLED

STEPS = ["fetch", "validate", "detect", "aggregate", "evaluate"]  # the cached steps, in order
KILL_POINTS = [*STEPS, "store", "finalize", "finalized", "report"]


@pytest.fixture(scope="module")
def world(anvil_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    platform = Platform.from_settings(Settings(chain_rpc_url=anvil_url, store_dir=root / "blocks"))
    with use_platform(platform):
        owner, aggregator = party(platform, "resume-owner"), party(platform, "resume-aggregator")
        trainers = [party(platform, "resume-trainer", i) for i in range(3)]
        task = TaskSpec(model=ModelConfig())
        _, owner_data = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=1)
        data = encode_dataset(owner_data)
        spec = MarketSpec(
            task_cid=str(platform.store.put(task.model_dump_json().encode())),
            data_cid=str(platform.store.put(data)),
            data_commitment=commit(data),
            aggregator=aggregator.address,
            aggregator_key="0x" + aggregator.public_box_key.hex(),
            trainers=3,
            rounds=len(KILL_POINTS) + 2,
            participation_reward_wei=10**15,
            schedule=RewardSchedule(thresholds_bps=(5000,), pools_wei=(10**17,)),
        )
        factory, _ = FactoryClient.deploy(platform.chain, owner.account)
        market, _ = factory.create_market(owner.account, spec, spec.max_payout())
        enrol(market, trainers, str(platform.store.put(b'{"summary": "ok"}')))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")} | {
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            "FEDMARKET_CHAIN_RPC_URL": anvil_url,
            "FEDMARKET_STORE_DIR": str(root / "blocks"),
            "FEDMARKET_ETH_PRIVATE_KEY": aggregator.account.key.hex(),
            "FEDMARKET_BOX_PRIVATE_KEY": private_key_bytes(aggregator.box_key).hex(),
        }
        yield platform, market, aggregator, trainers, task, env


def submit_round(platform, market, aggregator, trainers, task, round):
    open_next_round(market.address, aggregator.address)
    rng = np.random.default_rng(round)
    start = initial_model(task.model, seed=task.init_seed)
    locals_ = []
    for t in trainers:
        locals_.append(start + rng.normal(0, 0.01, size=start.shape))
        cid, commitment = seal_and_store(market.address, t.address, round, locals_[-1], task)
        market.submit(t.account, round, cid, commitment)
    return np.stack(locals_)


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_round_killed_at_each_step_resumes(world, kill_at, monkeypatch):
    platform, market, aggregator, trainers, task, env = world
    round = KILL_POINTS.index(kill_at) + 1
    with use_platform(platform):
        submit_round(platform, market, aggregator, trainers, task, round)
        killed = subprocess.run(
            [sys.executable, "-m", "tests.kill_round", kill_at, market.address, str(round)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert killed.returncode == KILLED, killed.stdout + killed.stderr
        landed = market.last_event("RoundFinalized", round=round)
        assert (landed is not None) == (kill_at in ("finalized", "report"))

        calls = Counter()
        for module, name, round_of in [
            (load_module, "fetch_submissions", lambda a, k: a[2]),
            (load_module, "validate_updates", lambda a, k: a[0].round),
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
    names = ["fetch_submissions", "validate_updates", "detect_outliers", "aggregate", "evaluate"]
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
    platform, market, aggregator, trainers, task, _ = world
    round = len(KILL_POINTS) + 1
    with use_platform(platform):
        locals_ = submit_round(platform, market, aggregator, trainers, task, round)
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
    platform, market, aggregator, trainers, task, _ = world
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
        submit_round(platform, market, aggregator, trainers, task, round)
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
    platform, market, _, _, _, _ = world
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
