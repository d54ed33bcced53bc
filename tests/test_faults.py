"""Faults outside the aggregator's own process. The chain node stopped mid-round and started
again from its saved state (anvil `--state`), at three points of a round: each round completes,
and no transaction is sent twice; a node that takes a transaction and loses its reply is not
taken for one that refused it. The Prefect server restarted while a round's run is in a step
and while the chain emits events: the run completes in the restarted server, and the listener
delivers every event of the outage."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

import fedmarket_flows.round as round_module
import fedmarket_tasks.load as load_module
from fedmarket.chain import FactoryClient
from fedmarket.context import Platform, use_platform
from fedmarket.settings import Settings
from fedmarket_flows.round import round_flow
from tests.digits_market import digits_market, submit_round
from tests.helpers import anvil_args, free_port, listening
from tests.kill_round import aggregator_env
from tests.market_processes import FEDMARKET, Processes, prefect_server, wait_for

OUTAGE_S = 4.0  # a node restart longer than web3's own default retries (1.9 s in all)


class Node:
    """anvil keeping its state in a file: stopped with SIGTERM (anvil then writes its state) and
    started again from that file on the same port, as an operator restarts a node."""

    def __init__(self, root: Path):
        self.port, self.state, self.log = free_port(), root / "anvil-state.json", root / "anvil.log"
        self.proc: subprocess.Popen | None = None
        self.restarts: list[threading.Thread] = []
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("a") as log:
            args = anvil_args(self.port, "--state", str(self.state))
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        assert listening(self.port, self.proc, time.monotonic() + 30), self.log.read_text()[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def restart_in(self, delay_s: float) -> None:
        """Stop now, and start again from the saved state `delay_s` later (in the background)."""
        self.stop()
        self.restarts.append(threading.Thread(target=lambda: (time.sleep(delay_s), self.start())))
        self.restarts[-1].start()


def outage_before(original, node: Node):
    @functools.wraps(original)  # Prefect binds a task's parameters by the wrapped signature
    def node_goes_away(*args, **kwargs):
        node.restart_in(OUTAGE_S)
        return original(*args, **kwargs)

    return node_goes_away


def outage_once_mined(wait_for_receipt, node: Node):
    """The node goes away once the transaction is mined (anvil mines a moment after it accepts
    one, and a transaction still pending at the restart is lost with the node's pool), and its
    receipt is then read from the restarted node."""

    def node_goes_away(tx_hash, *args, **kwargs):
        wait_for_receipt(tx_hash, *args, **kwargs)
        node.restart_in(OUTAGE_S)
        return wait_for_receipt(tx_hash, *args, **kwargs)

    return node_goes_away


def test_the_node_restarted_mid_round_loses_nothing_and_sends_nothing_twice(tmp_path, monkeypatch):
    node = Node(tmp_path)
    try:
        settings = Settings(chain_rpc_url=node.url, store_dir=tmp_path / "blocks", results_dir=tmp_path / "results")
        platform = Platform.from_settings(settings)
        with use_platform(platform):
            market, aggregator, trainers, task = digits_market(platform, "faults", trainers=3, rounds=2)
            chain = platform.chain

            # round 1: the node goes away as the updates are fetched (the step's chain reads wait
            # for it), and again between finalizing and the report's reads of the chain
            submit_round(market, aggregator, trainers, task, 1)
            sent_before = sent(chain, aggregator.address)
            fetch = load_module.fetch_updates
            monkeypatch.setattr(fetch, "fn", outage_before(fetch.fn, node))
            monkeypatch.setattr(round_module, "_report", outage_before(round_module._report, node))
            first = round_flow(market.address, 1, aggregator.address)
            assert len(node.restarts) == 2
            assert sent(chain, aggregator.address) == sent_before + 1  # finalizeRound, once
            monkeypatch.undo()

            # round 2: the node goes away once the finalizing transaction is mined, before its
            # receipt is read: the receipt is read from the restarted node, nothing is resent
            submit_round(market, aggregator, trainers, task, 2)
            sent_before = sent(chain, aggregator.address)
            eth = chain._w3.eth
            monkeypatch.setattr(
                eth, "wait_for_transaction_receipt", outage_once_mined(eth.wait_for_transaction_receipt, node)
            )
            second = round_flow(market.address, 2, aggregator.address)
            assert len(node.restarts) == 3
            assert sent(chain, aggregator.address) == sent_before + 1

            for report in (first, second):
                landed = market.events("RoundFinalized", round=report.round)
                assert len(landed) == 1
                assert report.tx_hashes["finalizeRound"] == "0x" + bytes(landed[0]["transactionHash"]).hex()
                assert report.benign_mask == 0b111 and market.round_state(report.round).finalized
    finally:
        for restart in node.restarts:
            restart.join()
        node.stop()


def sent(chain, address: str) -> int:
    """How many transactions `address` has sent (its nonce)."""
    return chain._w3.eth.get_transaction_count(address)


def test_a_prefect_server_restarted_mid_round_loses_no_run_and_no_event(anvil_url, tmp_path):
    home = tmp_path / "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FEDMARKET_"))}
    procs = Processes(tmp_path, env | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    settings = Settings(chain_rpc_url=anvil_url, store_dir=tmp_path / "blocks", results_dir=tmp_path / "results")
    platform = Platform.from_settings(settings)
    try:
        port = free_port()
        api = prefect_server(procs, "prefect-server", home, port)
        with use_platform(platform):
            market, aggregator, trainers, task = digits_market(platform, "restart", trainers=3, rounds=1)
            submit_round(market, aggregator, trainers, task, 1)
        aggregator_run = aggregator_env(settings, aggregator, api) | {
            "FEDMARKET_FACTORY_ADDRESS": market.factory(),
            "FEDMARKET_STATE_DIR": str(tmp_path / "state"),
            "FEDMARKET_POLL_INTERVAL_S": "0.5",
        }
        # the listener without the Prefect client's own retries (about a minute): as in an outage
        # longer than they last, its polls meet the server away
        listen = [FEDMARKET, "aggregator", "listen"]
        procs.start("listener", listen, **aggregator_run, PREFECT_CLIENT_MAX_RETRIES="0")
        step = tmp_path / "step"
        step.mkdir()
        run = procs.start(
            "round",
            [sys.executable, "-m", "tests.kill_round", "pause-detect", market.address, "1", str(step)],
            **aggregator_run,
        )
        wait_for(lambda: (step / "paused").exists(), 180, "the round's run to reach its detect step", procs)

        server = next(proc for name, proc in procs.running if name == "prefect-server")
        server.terminate()
        server.wait(timeout=60)
        (step / "go").touch()  # the run goes on while the server is away: its API calls wait
        with use_platform(platform):  # chain events while the server is away: a second market
            factory = FactoryClient(platform.chain, market.factory())
            later, *_ = digits_market(platform, "restart", trainers=3, rounds=1, factory=factory)
        prefect_server(procs, "prefect-server-restarted", home, port)

        assert wait_for(lambda: run.poll() is not None, 300, "the round's run to end", procs) is not None
        assert run.returncode == 0, procs.logs()
        assert len(market.events("RoundFinalized", round=1)) == 1
        states = {r["name"]: r["state_type"] for r in httpx.post(f"{api}/flow_runs/filter", json={}).json()}
        assert states[f"round-1-{market.address}"] == "COMPLETED", states

        def delivered() -> Counter | None:
            names = Counter(e.event for e in _events(api, later.address))
            return names if names["fedmarket.market.training-started"] else None

        names = wait_for(delivered, 120, "the outage's events in the restarted server", procs)
        assert names["fedmarket.market.created"] == 1
        assert names["fedmarket.trainer.registered"] == names["fedmarket.trainer.seed-revealed"] == 3

        def finalized() -> bool:
            return "fedmarket.round.finalized" in {e.event for e in _events(api, market.address)}

        wait_for(finalized, 120, "the round's RoundFinalized event in the restarted server", procs)
    finally:
        procs.stop()


def _events(api: str, market: str) -> list:
    """The events the Prefect server at `api` stored about `market` (of the last day, its default)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(resource=EventResourceFilter(id=[f"fedmarket.market.{market}"])), limit=50
        )
    return page.events


class LosingReplies(http.server.BaseHTTPRequestHandler):
    """A JSON-RPC proxy to `node` that, while `lose` is set, hands one raw transaction to the
    node and drops the connection instead of answering (a reply lost on the way back)."""

    node: str
    lose = threading.Event()
    lost: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = httpx.post(self.node, content=body, headers={"Content-Type": "application/json"}, timeout=30)
        if b"eth_sendRawTransaction" in body and self.lose.is_set():
            self.lose.clear()
            self.lost.append(answer.json())
            self.close_connection = True
            return  # the node has the transaction; the caller gets no reply
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args):
        pass


def test_a_transaction_whose_reply_is_lost_is_the_transaction_sent(anvil_url, tmp_path):
    handler = type("Proxy", (LosingReplies,), {"node": anvil_url, "lost": []})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        platform = Platform.from_settings(Settings(chain_rpc_url=url, store_dir=tmp_path / "blocks"))
        with use_platform(platform):
            market, aggregator, _, _ = digits_market(platform, "lost-reply", trainers=3, rounds=1)
            before = sent(platform.chain, aggregator.address)
            handler.lose.set()
            opened = market.open_round(aggregator.account, str(platform.store.put(b"model")), "0x" + "22" * 32)
        assert handler.lost and "result" in handler.lost[0]  # the node took it, the reply was lost
        assert opened.tx_hash == handler.lost[0]["result"] and opened.receipt["status"] == 1
        assert sent(platform.chain, aggregator.address) == before + 1
        assert len(market.events("RoundOpened", round=1)) == 1
    finally:
        proxy.shutdown()
