"""Run a round flow and kill its process at one step (`python -m tests.kill_round STEP MARKET
ROUND`): the step's code is replaced by `os._exit`, as a SIGKILL or a lost machine would end it.
Used by tests/test_resume.py and tests/test_zk_flow.py (`prove`: the worker's run dies while it
proves); `pause-STEP MARKET ROUND DIR` instead holds the step until the test says go
(tests/test_faults.py). Never used by the product."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import fedmarket_flows.round as round_module
import fedmarket_tasks.load as load_module
from fedmarket.chain.market import MarketClient

KILLED = 86


def die(*args, **kwargs):
    os._exit(KILLED)


die.submit = die  # the flow submits its heavy steps to its task runner


def paused(original, where: Path):
    """`original`, once `where`/paused exists and `where`/go appears: the test acts meanwhile."""

    @functools.wraps(original)
    def waiting(*args, **kwargs):
        (where / "paused").touch()
        while not (where / "go").exists():
            time.sleep(0.1)
        return original(*args, **kwargs)

    return waiting


def after_landing(original):
    def finalize_then_die(*args, **kwargs):
        original(*args, **kwargs)  # the transaction is mined ...
        os._exit(KILLED)  # ... and the process dies before the flow records anything

    return finalize_then_die


STEPS = {
    "fetch": (load_module, "fetch_updates"),
    "detect": (round_module, "detect_outliers"),
    "aggregate": (round_module, "aggregate"),
    "prove": (round_module, "prove_round_step"),
    "evaluate": (round_module, "evaluate"),
    "store": (round_module, "put_bytes"),
    "finalize": (round_module, "finalize_round"),
    "report": (round_module, "publish_round"),
}


def run_killed(step: str, market: str, round: int, settings, aggregator) -> subprocess.CompletedProcess:
    """Run round `round` of `market` in a new process as `aggregator` (a Party), with `settings`'
    node, store and circuits and the current Prefect API, killed at `step`."""
    from tests.helpers import REPO_ROOT

    args = [sys.executable, "-m", "tests.kill_round", step, market, str(round)]
    env = aggregator_env(settings, aggregator)
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def aggregator_env(settings, aggregator, prefect_api: str | None = None) -> dict[str, str]:
    """The environment of an aggregator's process: `settings`' node, store, results and circuits,
    `aggregator`'s keys, and `prefect_api` (default: the current Prefect API)."""
    from prefect.settings import PREFECT_API_URL

    from fedmarket.crypto import private_key_bytes

    return {k: v for k, v in os.environ.items() if not k.startswith(("FEDMARKET_", "PREFECT_API"))} | {
        "PREFECT_API_URL": prefect_api or PREFECT_API_URL.value(),
        "FEDMARKET_CHAIN_RPC_URL": settings.chain_rpc_url,
        "FEDMARKET_STORE_DIR": str(settings.store_dir),
        "FEDMARKET_RESULTS_DIR": str(settings.results_dir),
        "FEDMARKET_ZK_CACHE_DIR": str(settings.zk_cache_dir),
        "FEDMARKET_ETH_PRIVATE_KEY": aggregator.account.key.hex(),
        "FEDMARKET_BOX_PRIVATE_KEY": private_key_bytes(aggregator.box_key).hex(),
    }


if __name__ == "__main__":
    step, market, round = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if step.startswith("pause-"):  # not killed: the step's task waits (`paused`), then the round completes
        module, name = STEPS[step.removeprefix("pause-")]
        task = getattr(module, name)
        task.fn = paused(task.fn, Path(sys.argv[4]))
        round_module.round_flow(market, round)
        sys.exit(0)
    if step == "finalized":
        MarketClient.finalize_round = after_landing(MarketClient.finalize_round)
    else:
        module, name = STEPS[step]
        setattr(module, name, die)
    round_module.round_flow(market, round)
    sys.exit(0)  # not killed: the test fails on this exit status
