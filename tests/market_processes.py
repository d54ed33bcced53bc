"""A market run as its users run it, in separate processes: a local `prefect server`, the
deployments of prefect.yaml on a process work pool with a worker, the aggregator's chain listener,
on anvil and a content store; the callers start the trainers. Shared by tests/test_e2e.py and
tests/test_load.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fedmarket.chain import Chain
from fedmarket.identity import write_key_file
from fedmarket.settings import Settings
from fedmarket.store import ContentStore, open_store
from tests.helpers import REPO_ROOT, free_port

BIN = Path(sys.executable).parent
FEDMARKET, PREFECT = str(BIN / "fedmarket"), str(BIN / "prefect")


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


def wait_for(check, timeout: float, what: str, procs: Processes, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


def healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def flow_runs(api: str) -> list[dict]:
    deployments = {d["id"]: d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}).json()
    return [
        {
            "deployment": deployments[r["deployment_id"]],
            "parameters": r["parameters"],
            "state": r["state_type"],
            "tags": r["tags"],
        }
        for r in runs
        if r.get("deployment_id") in deployments
    ]


def prefect_server(procs: Processes, name: str, home: Path, port: int | None = None) -> str:
    """Start a `prefect server` with its own database under `home` (on `port`, default a free
    one; the same `home` and port: the same server restarted); returns its API URL."""
    port = port or free_port()
    api = f"http://127.0.0.1:{port}/api"
    procs.start(
        name,
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api,
        PREFECT_UI_API_URL=api,
    )
    wait_for(lambda: healthy(api), 90, name, procs)
    return api


@dataclass
class MarketProcesses:
    procs: Processes
    api: str
    chain: Chain
    content: ContentStore
    keys: dict[str, dict]  # name -> {address, box_public_key, key_file}
    files: dict  # `fedmarket data digits` output: {owner, trainers: [...]}
    created: dict  # `fedmarket owner create` output
    worker: subprocess.Popen | None = None
    listener: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)

    @property
    def market(self) -> str:
        return self.created["market"]

    @property
    def owner_env(self) -> dict:
        return {"FEDMARKET_KEY_FILE": self.keys["owner"]["key_file"]}


@contextmanager
def market_processes(
    tmp_path: Path,
    anvil_url: str,
    *,
    trainers: int,
    rounds: int,
    ipfs_api_url: str | None = None,
    create_args: tuple[str, ...] = (),
    keys_by_cli: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[MarketProcesses]:
    """Start the server, deploy, make keys (the trainers' `trainer-{i}`), fund them, split digits,
    create the market and start the worker and the listener; everything stops when the block ends.
    `ipfs_api_url`: every party's store is that IPFS node, else an embedded store they share;
    `env`: more variables for every process."""
    extra = env or {}
    env = (
        {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FEDMARKET_"))}
        | {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
            "FEDMARKET_CHAIN_RPC_URL": anvil_url,
            "FEDMARKET_STORE_DIR": str(tmp_path / "blocks"),
            "FEDMARKET_STATE_DIR": str(tmp_path / "state"),
            "FEDMARKET_POLL_INTERVAL_S": "0.5",
            "FEDMARKET_SECAGG_CHECK_S": "1",
        }
        | extra
    )
    store_settings = {"store_dir": tmp_path / "blocks"}
    if ipfs_api_url is not None:
        env |= {"FEDMARKET_STORE_BACKEND": "kubo", "FEDMARKET_KUBO_API_URL": ipfs_api_url}
        store_settings |= {"store_backend": "kubo", "kubo_api_url": ipfs_api_url}
    procs = Processes(tmp_path, env)
    try:
        api = prefect_server(procs, "prefect-server", tmp_path / "prefect")
        env["PREFECT_API_URL"] = api
        procs.run([PREFECT, "work-pool", "create", "fedmarket-process", "--type", "process"])
        procs.run([PREFECT, "--no-prompt", "deploy", "--all"])

        keys = {}
        for name in ["owner", "aggregator", *[f"trainer-{i}" for i in range(trainers)]]:
            out = tmp_path / "keys" / f"{name}.json"
            if keys_by_cli:
                keys[name] = json.loads(procs.run([FEDMARKET, "keys", "new", "--out", str(out), "--role", name]))
            else:
                party = write_key_file(out, name)
                keys[name] = {"address": party.address, "box_public_key": "0x" + party.public_box_key.hex()}
                keys[name]["key_file"] = str(out)
        chain = Chain.connect(Settings(chain_rpc_url=anvil_url))
        for name, info in keys.items():  # the owner escrows every payout of up to 128 trainers
            chain.fund(info["address"], (1000 if name == "owner" else 10) * 10**18)
        files = json.loads(
            procs.run([FEDMARKET, "data", "digits", "--out", str(tmp_path / "data"), "--trainers", str(trainers)])
        )
        create = [FEDMARKET, "owner", "create", "--data", files["owner"], "--aggregator", keys["aggregator"]["address"]]
        create += ["--aggregator-key", keys["aggregator"]["box_public_key"], "--trainers", str(trainers)]
        create += ["--rounds", str(rounds), *create_args]
        created = json.loads(procs.run(create, FEDMARKET_KEY_FILE=keys["owner"]["key_file"]))
        content = open_store(Settings(**store_settings))
        running = MarketProcesses(procs, api, chain, content, keys, files, created, env=env)
        aggregator_env = {
            "FEDMARKET_KEY_FILE": keys["aggregator"]["key_file"],
            "FEDMARKET_FACTORY_ADDRESS": created["factory"],
        }
        running.worker = procs.start(
            "worker", [PREFECT, "worker", "start", "--pool", "fedmarket-process"], **aggregator_env
        )
        running.listener = procs.start("listener", [FEDMARKET, "aggregator", "listen"], **aggregator_env)
        yield running
    finally:
        procs.stop()
