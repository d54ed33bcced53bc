"""A real multi-process market, driven only through the CLIs and chain events: anvil, a local
`prefect server`, the deployments of prefect.yaml on a process work pool with a worker, the
aggregator's chain listener, and four `fedmarket trainer run` daemons, each with its own key
file. The market must end settled with every payout withdrawn, each round run exactly once; in
plain and in secure aggregation (the trainers post keys, mask and reveal from their daemons).

Run by `make e2e` (and by `make test`); prints the wall time and the median Prefect overhead per
task, measured against the same server."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fedmarket.chain import Chain, FactoryClient, MarketClient
from fedmarket.market_context import task_spec
from fedmarket.settings import Settings
from fedmarket.store.embedded import EmbeddedStore
from tests.helpers import REPO_ROOT

BIN = Path(sys.executable).parent
TRAINERS, ROUNDS = 4, 2
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    def __init__(self, root: Path, env: dict):
        self.root, self.env, self.running = root, env, []

    def start(self, name: str, args: list[str], **env) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.running.append((name, proc))
        return proc

    def run(self, args: list[str], timeout: float = 300, **env) -> str:
        done = subprocess.run(
            args, cwd=REPO_ROOT, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n" + (self.root / f"{name}.log").read_text()[-3000:] for name, _ in self.running)

    def stop(self) -> None:
        for _, proc in reversed(self.running):
            proc.terminate()
        for _, proc in reversed(self.running):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for(check, timeout: float, what: str, procs: Processes):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


@pytest.mark.parametrize("aggregation", ["plain", "secure"])
def test_market_across_processes_driven_by_chain_events(anvil_url, tmp_path, aggregation):
    started = time.monotonic()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FEDMARKET_"))} | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
        "FEDMARKET_CHAIN_RPC_URL": anvil_url,
        "FEDMARKET_STORE_DIR": str(tmp_path / "blocks"),
        "FEDMARKET_STATE_DIR": str(tmp_path / "state"),
        "FEDMARKET_POLL_INTERVAL_S": "0.5",
    }
    procs = Processes(tmp_path, env)
    fedmarket, prefect = str(BIN / "fedmarket"), str(BIN / "prefect")
    try:
        procs.start("prefect-server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)])
        wait_for(lambda: _healthy(api), 90, "prefect server", procs)
        procs.run([prefect, "work-pool", "create", "fedmarket-process", "--type", "process"])
        procs.run([prefect, "--no-prompt", "deploy", "--all"])

        keys = {}
        for name in ["owner", "aggregator", *[f"trainer-{i}" for i in range(TRAINERS)]]:
            keys[name] = json.loads(
                procs.run([fedmarket, "keys", "new", "--out", str(tmp_path / "keys" / f"{name}.json"), "--role", name])
            )
        chain = Chain.connect(Settings(chain_rpc_url=anvil_url))
        for info in keys.values():
            chain.fund(info["address"], 10 * 10**18)
        files = json.loads(
            procs.run([fedmarket, "data", "digits", "--out", str(tmp_path / "data"), "--trainers", str(TRAINERS)])
        )

        owner_env = {"FEDMARKET_KEY_FILE": keys["owner"]["key_file"]}
        created = json.loads(
            procs.run(
                [
                    fedmarket,
                    "owner",
                    "create",
                    "--data",
                    files["owner"],
                    "--aggregator",
                    keys["aggregator"]["address"],
                    "--aggregator-key",
                    keys["aggregator"]["box_public_key"],
                    "--trainers",
                    str(TRAINERS),
                    "--rounds",
                    str(ROUNDS),
                    "--aggregation",
                    aggregation,
                ],
                **owner_env,
            )
        )
        market = created["market"]
        aggregator_env = {
            "FEDMARKET_KEY_FILE": keys["aggregator"]["key_file"],
            "FEDMARKET_FACTORY_ADDRESS": created["factory"],
        }
        procs.start("worker", [prefect, "worker", "start", "--pool", "fedmarket-process"], **aggregator_env)
        procs.start("listener", [fedmarket, "aggregator", "listen"], **aggregator_env)
        trainers = [
            procs.start(
                f"trainer-{i}",
                [fedmarket, "trainer", "run", "--market", market, "--data", files["trainers"][i]],
                FEDMARKET_KEY_FILE=keys[f"trainer-{i}"]["key_file"],
            )
            for i in range(TRAINERS)
        ]
        wait_for(lambda: all(t.poll() is not None for t in trainers), 900, "trainers to withdraw their payouts", procs)
        assert [t.returncode for t in trainers] == [0] * TRAINERS, procs.logs()
        procs.run([fedmarket, "owner", "withdraw", "--market", market], **owner_env)
        status = json.loads(procs.run([fedmarket, "owner", "status", "--market", market]))
        wall_s = time.monotonic() - started

        # the audit deployment ran on the settlement's event; then anyone with the node and the
        # store re-checks the market through the CLI, and an altered block fails it
        def audit_run_done():
            runs = [r for r in _flow_runs(api) if r["deployment"] == "audit"]
            return runs if runs and all(r["state"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs) else None

        audit_runs = wait_for(audit_run_done, 180, "the audit deployment's run", procs)
        assert [r["state"] for r in audit_runs] == ["COMPLETED"], procs.logs()
        audit = json.loads(procs.run([fedmarket, "audit", market, "--json"]))
        assert audit["passed"], audit
        assert {c["name"]: c["status"] for c in audit["checks"]}["accuracy"] == "pass"
        final_cid, _ = MarketClient(chain, market).aggregate_of(ROUNDS)
        aggregate = EmbeddedStore(tmp_path / "blocks").path_of(final_cid)
        aggregate.write_bytes(aggregate.read_bytes()[:-1] + b"\0")
        done = subprocess.run([fedmarket, "audit", market], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and "fail" in done.stdout and "Traceback" not in done.stderr

        assert status["phase"] == "Settled"
        assert status["balance"] == 0 and set(status["owed"].values()) == {0}
        client = MarketClient(chain, market)
        assert task_spec(client, EmbeddedStore(tmp_path / "blocks")).aggregation == aggregation
        if aggregation == "secure":  # every trainer keyed, and each round unmasked from their reveals
            board = FactoryClient(chain, created["factory"]).secure_aggregation()
            assert board.keyed_mask(market) == 2**TRAINERS - 1
            for r in range(1, ROUNDS + 1):
                assert len(board.share_reveals(market, r, client.creation_block())) >= TRAINERS // 2 + 1
        assert [r["finalized"] for r in status["rounds"]] == [True] * ROUNDS
        assert all(r["benign_mask"] == 2**TRAINERS - 1 for r in status["rounds"])  # four honest trainers
        runs = _flow_runs(api)
        by_deployment: dict[str, list[dict]] = {}
        for run in runs:
            by_deployment.setdefault(run["deployment"], []).append(run)
        rounds = sorted(int(r["parameters"]["round"]) for r in by_deployment["round"])
        assert rounds == list(range(1, ROUNDS + 1))  # one event, one run: each round ran exactly once
        assert len(by_deployment["settlement"]) == 1
        assert all(r["state"] == "COMPLETED" for d in ("round", "settlement", "advance") for r in by_deployment[d])
        overhead = _task_overhead(procs)
        print(
            f"\nE2E: wall {wall_s:.1f} s for {ROUNDS} rounds with {TRAINERS} trainer processes; "
            f"flow runs {', '.join(f'{d}={len(v)}' for d, v in sorted(by_deployment.items()))}; "
            f"median Prefect overhead per task {overhead * 1000:.1f} ms"
        )
    finally:
        procs.stop()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _flow_runs(api: str) -> list[dict]:
    deployments = {d["id"]: d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}).json()
    return [
        {"deployment": deployments[r["deployment_id"]], "parameters": r["parameters"], "state": r["state_type"]}
        for r in runs
        if r.get("deployment_id") in deployments
    ]


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
