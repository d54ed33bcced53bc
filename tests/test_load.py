"""Load: a market of 100 trainers through the real flows, `make e2e-load` (not part of `make test`).

anvil, a real IPFS node (js-ipfs), a Prefect server with the deployments on a process work pool,
the worker and the chain listener as in tests/test_e2e.py; the trainers are light clients, 25 per
process (tests/load_swarm.py), each with its own key and data share, training and submitting in
every round through the trainer daemon's code, their runs on a second Prefect server (trainers
are other parties; 100 of them on the aggregator's SQLite server lock its database). 3 rounds; the market must end Settled with every
payout withdrawn. Prints per round the seconds from the last submission to `RoundFinalized`, the
gas of the round's transactions, the aggregator's peak memory and the listener's lag."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import psutil
import pytest

from fedmarket.chain import MarketClient
from tests.market_processes import FEDMARKET, market_processes, prefect_server

TRAINERS, ROUNDS, PER_PROCESS = 100, 3, 25
pytestmark = pytest.mark.load


def peak_rss_mib(root: psutil.Process) -> float:
    """The largest high-water mark of resident memory among `root`'s descendants (the flow runs)."""
    peak = 0
    for proc in root.children(recursive=True):
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
        peak = max(peak, int(hwm))
    return peak / 1024


def listener_lag(run, state_dir: Path) -> int | None:
    files = list(state_dir.glob("listener-*.json"))
    if not files:
        return None
    try:
        next_block = json.loads(files[0].read_text())["next_block"]
    except (OSError, ValueError, KeyError):
        return None
    return max(0, run.chain.head() - (next_block - 1))


def test_a_hundred_trainers_three_rounds(anvil_url, ipfs_api_url, tmp_path):
    create = ("--round-duration-s", "1800", "--reveal-window-s", "1800")
    with market_processes(
        tmp_path,
        anvil_url,
        trainers=TRAINERS,
        rounds=ROUNDS,
        ipfs_api_url=ipfs_api_url,
        create_args=create,
        keys_by_cli=False,
    ) as run:
        # the trainers are other parties: their runs go to a Prefect server of their own
        trainers_api = prefect_server(run.procs, "trainers-prefect-server", tmp_path / "trainers-prefect")
        started = time.monotonic()
        swarms = []
        for first in range(0, TRAINERS, PER_PROCESS):
            pairs = [
                [run.keys[f"trainer-{i}"]["key_file"], run.files["trainers"][i]]
                for i in range(first, first + PER_PROCESS)
            ]
            spec = tmp_path / f"swarm-{first}.json"
            spec.write_text(json.dumps({"market": run.market, "trainers": pairs}))
            swarms.append(
                run.procs.start(
                    f"swarm-{first}",
                    [sys.executable, "-m", "tests.load_swarm", str(spec)],
                    FEDMARKET_POLL_INTERVAL_S="2",
                    PREFECT_HOME=str(tmp_path / "trainers-prefect"),
                    PREFECT_API_URL=trainers_api,
                )
            )
        worker = psutil.Process(run.worker.pid)
        peak_mib, lags = 0.0, []
        deadline = time.monotonic() + 3600
        while any(s.poll() is None for s in swarms):
            assert time.monotonic() < deadline, "the market did not end in an hour\n" + run.procs.logs()
            peak_mib = max(peak_mib, peak_rss_mib(worker))
            if (lag := listener_lag(run, tmp_path / "state")) is not None:
                lags.append(lag)
            time.sleep(1)
        wall_s = time.monotonic() - started
        assert [s.returncode for s in swarms] == [0] * len(swarms), run.procs.logs()

        run.procs.run([FEDMARKET, "owner", "withdraw", "--market", run.market], **run.owner_env)
        status = json.loads(run.procs.run([FEDMARKET, "owner", "status", "--market", run.market]))
        assert status["phase"] == "Settled"
        assert status["balance"] == 0 and set(status["owed"].values()) == {0}
        assert [r["finalized"] for r in status["rounds"]] == [True] * ROUNDS

        lines = [
            f"\nLOAD: {TRAINERS} trainers in {TRAINERS // PER_PROCESS} processes, {ROUNDS} rounds, wall {wall_s:.0f} s"
        ]
        client = MarketClient(run.chain, run.market)
        since = client.creation_block()
        for r in range(1, ROUNDS + 1):
            submitted = run.chain.events(client.contract, "UpdateSubmitted", since, round=r)
            finalized = run.chain.events(client.contract, "RoundFinalized", since, round=r)
            assert len(submitted) == TRAINERS and len(finalized) == 1
            last = max(run.chain.timestamp(e["blockNumber"]) for e in submitted)
            done = run.chain.timestamp(finalized[0]["blockNumber"])
            submit_gas = [run.chain.receipt(e["transactionHash"]).gas_used for e in submitted]
            finalize_gas = run.chain.receipt(finalized[0]["transactionHash"]).gas_used
            benign = bin(finalized[0]["args"]["benignMask"]).count("1")
            lines.append(
                f"round {r}: last submission -> RoundFinalized {done - last} s; finalizeRound {finalize_gas} gas; "
                f"submit median {statistics.median(submit_gas):.0f} gas ({sum(submit_gas)} for the round); "
                f"{benign} of {TRAINERS} benign"
            )
        lines.append(f"aggregator flow runs: peak resident memory {peak_mib:.0f} MiB")
        if lags:
            lines.append(f"listener lag behind the head: median {statistics.median(lags):.0f}, max {max(lags)} blocks")
        print("\n".join(lines))
