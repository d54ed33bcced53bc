"""A real multi-process market, driven only through the CLIs and chain events: anvil, a local
`prefect server`, the deployments of prefect.yaml on a process work pool with a worker, the
aggregator's chain listener, and four `fedmarket trainer run` daemons, each with its own key
file. The market must end settled with every payout withdrawn, each round run exactly once, a
trainer daemon killed between its last submission and its withdrawal resuming when restarted; in
plain aggregation with every party on a real IPFS node (js-ipfs, `ipfs_api_url`), and in secure
aggregation (the trainers post keys, mask and reveal from their daemons) on the embedded store,
over one round.

Run by `make e2e` (and by `make test`); prints the wall time and the median Prefect overhead per
task, measured against the same server."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import pytest

from fedmarket.chain import FactoryClient, MarketClient
from fedmarket.market_context import task_spec
from fedmarket.store import EmbeddedStore
from tests.market_processes import FEDMARKET, Processes, flow_runs, market_processes, wait_for

TRAINERS = 4
pytestmark = pytest.mark.e2e


# secure aggregation in one round: tests/test_secure_market.py runs its later rounds in one process
@pytest.mark.parametrize(("aggregation", "store", "rounds"), [("plain", "ipfs", 2), ("secure", "embedded", 1)])
def test_market_across_processes_driven_by_chain_events(anvil_url, tmp_path, aggregation, store, rounds, request):
    started = time.monotonic()
    ipfs = request.getfixturevalue("ipfs_api_url") if store == "ipfs" else None
    create_args = ("--aggregation", aggregation)
    with market_processes(
        tmp_path, anvil_url, trainers=TRAINERS, rounds=rounds, ipfs_api_url=ipfs, create_args=create_args
    ) as run:
        procs, api, chain, content, market, env = run.procs, run.api, run.chain, run.content, run.market, run.env
        fedmarket, files, keys, created, owner_env = FEDMARKET, run.files, run.keys, run.created, run.owner_env

        def daemon(i: int, name: str) -> subprocess.Popen:
            return procs.start(
                name,
                [fedmarket, "trainer", "run", "--market", market, "--data", files["trainers"][i]],
                FEDMARKET_KEY_FILE=keys[f"trainer-{i}"]["key_file"],
            )

        trainers = [daemon(i, f"trainer-{i}") for i in range(TRAINERS)]
        # fault: trainer 0's daemon is killed once its last update is on chain, before it can
        # withdraw (or, in secure aggregation, reveal its shares), and started again
        client = MarketClient(chain, market)
        wait_for(lambda: client.submitted_mask(rounds) & 1, 900, "trainer 0's last submission", procs)
        trainers[0].kill()
        trainers[0].wait()
        trainers[0] = daemon(0, "trainer-0-restarted")
        wait_for(lambda: all(t.poll() is not None for t in trainers), 900, "trainers to withdraw their payouts", procs)
        assert [t.returncode for t in trainers] == [0] * TRAINERS, procs.logs()
        procs.run([fedmarket, "owner", "withdraw", "--market", market], **owner_env)
        status = json.loads(procs.run([fedmarket, "owner", "status", "--market", market]))
        wall_s = time.monotonic() - started

        # the audit deployment ran on the settlement's event; then anyone with the node and the
        # store re-checks the market through the CLI, and an altered block fails it
        def audit_run_done():
            runs = [r for r in flow_runs(api) if r["deployment"] == "audit"]
            return runs if runs and all(r["state"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs) else None

        audit_runs = wait_for(audit_run_done, 180, "the audit deployment's run", procs)
        assert [r["state"] for r in audit_runs] == ["COMPLETED"], procs.logs()
        audit = json.loads(procs.run([fedmarket, "audit", market, "--json"]))
        assert audit["passed"], audit
        assert {c["name"]: c["status"] for c in audit["checks"]}["accuracy"] == "pass"
        if isinstance(content, EmbeddedStore):  # a real node's blocks cannot be altered in place
            final_cid, _ = MarketClient(chain, market).aggregate_of(rounds)
            aggregate = content.path_of(final_cid)
            aggregate.write_bytes(aggregate.read_bytes()[:-1] + b"\0")
            done = subprocess.run([fedmarket, "audit", market], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 1 and "fail" in done.stdout and "Traceback" not in done.stderr

        assert status["phase"] == "Settled"
        withdrawn = client.events("Withdrawn", account=keys["trainer-0"]["address"])
        assert len(withdrawn) == 1 and withdrawn[0]["args"]["amount"] > 0  # the restarted daemon, once
        assert status["balance"] == 0 and set(status["owed"].values()) == {0}
        assert task_spec(client, content).aggregation == aggregation
        if aggregation == "secure":  # every trainer keyed, and each round unmasked from their reveals
            board = FactoryClient(chain, created["factory"]).secure_aggregation()
            assert board.keyed_mask(market) == 2**TRAINERS - 1
            for r in range(1, rounds + 1):
                assert len(board.share_reveals(market, r, client.creation_block())) >= TRAINERS // 2 + 1
        assert [r["finalized"] for r in status["rounds"]] == [True] * rounds
        assert all(r["benign_mask"] == 2**TRAINERS - 1 for r in status["rounds"])  # four honest trainers
        runs = flow_runs(api)
        by_deployment: dict[str, list[dict]] = {}
        for run in runs:
            by_deployment.setdefault(run["deployment"], []).append(run)
        round_runs = sorted(int(r["parameters"]["round"]) for r in by_deployment["round"])
        # one event, one run: a plain round runs once; a secure one twice, the first ending once it
        # has fixed the survivors (no worker held for the reveals), the second on reveals-complete
        runs_per_round = 2 if aggregation == "secure" else 1
        assert round_runs == sorted(list(range(1, rounds + 1)) * runs_per_round)
        for run_ in by_deployment["round"]:  # the UI filters runs by role, market, chain and round
            round_tag = f"round:{run_['parameters']['round']}"
            assert {"role:aggregator", f"market:{market.lower()}", round_tag} <= set(run_["tags"]), run_
        assert len(by_deployment["settlement"]) == 1
        assert all(r["state"] == "COMPLETED" for d in ("round", "settlement", "advance") for r in by_deployment[d])
        overhead = _task_overhead(procs)
        print(
            f"\nE2E: wall {wall_s:.1f} s for {rounds} round(s) with {TRAINERS} trainer processes; "
            f"flow runs {', '.join(f'{d}={len(v)}' for d, v in sorted(by_deployment.items()))}; "
            f"median Prefect overhead per task {overhead * 1000:.1f} ms"
        )


def _task_overhead(procs: Processes) -> float:
    """Median seconds Prefect adds to one task: a flow of no-op tasks on the same server."""
    code = (
        "import time, statistics, json\n"
        "from prefect import flow, task\n"
        "@task\ndef noop(i): return i\n"
        "@flow\ndef bench():\n"
        "    out = []\n"
        "    for i in range(40):\n"
        "        t = time.perf_counter(); noop(i); out.append(time.perf_counter() - t)\n"
        "    return out\n"
        "print(json.dumps(bench()))\n"
    )
    times = json.loads(procs.run([sys.executable, "-c", code]).strip().splitlines()[-1])
    return statistics.median(times)
