"""Small builders shared by the tests: parties and a market straight through the bindings."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_utils import keccak

from fedmarket.audit import ledger_differences
from fedmarket.chain import FactoryClient, MarketClient, MarketLedger, account_from_key
from fedmarket.context import Platform
from fedmarket.crypto import private_key_from_bytes
from fedmarket.identity import Party
from fedmarket.simulation.enrol import enrol
from fedmarket_schemas.market import MarketSpec, RewardSchedule

ETHER = 10**18
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anvil_args(port: int, *extra: str) -> list[str]:
    """anvil from npm `@foundry-rs/anvil` on loopback `port`, configured as the tests need it."""
    binary = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if not binary.exists():
        raise RuntimeError("node_modules/.bin/anvil is missing: run `make setup`")
    limits = ["--hardfork", "cancun", "--code-size-limit", "24576"]
    return [str(binary), "--host", "127.0.0.1", "--port", str(port), *limits, *extra]


def listening(port: int, proc: subprocess.Popen, deadline: float) -> bool:
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@contextmanager
def local_server(name: str, args: list[str], port: int, log_dir: Path, timeout_s: float = 60) -> Iterator[Path]:
    """Run `args`, a server that listens on loopback `port`, until the block ends; yields its log."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        if not listening(port, proc, time.monotonic() + timeout_s):
            proc.kill()
            raise RuntimeError(f"{name} did not start (exit {proc.poll()}): {log_path.read_text()[-2000:]}")
        try:
            yield log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def party(platform: Platform, role: str, index: int = 0) -> Party:
    material = f"test/{role}/{index}".encode()
    p = Party(role, account_from_key(keccak(material + b"/eth")), private_key_from_bytes(keccak(material + b"/x")))
    platform.chain.fund(p.address, 10 * ETHER)
    return platform.add(p)


def small_spec(platform: Platform, aggregator: Party, *, trainers: int = 3, rounds: int = 2, **overrides) -> MarketSpec:
    task_cid = str(platform.store.put(b'{"task": "test"}'))
    data_cid = str(platform.store.put(b"owner data"))
    fields = dict(
        task_cid=task_cid,
        data_cid=data_cid,
        data_commitment="0x" + "11" * 32,
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=trainers,
        rounds=rounds,
        participation_reward_wei=10**15,
        aggregator_fee_wei=10**16,
        schedule=RewardSchedule(thresholds_bps=(5000, 9000), pools_wei=(10**17, 10**18)),
    )
    fields.update(overrides)
    return MarketSpec(**fields)


def verifier_factory(platform: Platform) -> tuple[FactoryClient, Party]:
    """A factory to deploy verifiers through (a market may name only its factory's), and who deploys."""
    deployer = party(platform, "verifier-deployer")
    return FactoryClient.deploy(platform.chain, deployer.account)[0], deployer


def create_market(
    platform: Platform,
    *,
    trainers: int = 3,
    rounds: int = 2,
    register: bool = True,
    reveal: bool = True,
    factory: FactoryClient | None = None,
    **overrides,
):
    """A market with `trainers` registered and (by default) their seeds revealed: in Training."""
    owner = party(platform, "owner")
    aggregator = party(platform, "aggregator")
    members = [party(platform, "trainer", i) for i in range(trainers)]
    spec = small_spec(platform, aggregator, trainers=trainers, rounds=rounds, **overrides)
    if factory is None:
        factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    market, _ = factory.create_market(owner.account, spec, spec.max_payout())
    summary = str(platform.store.put(b'{"summary": "ok"}'))
    if register and reveal:
        enrol(market, members, summary)
    elif register:
        for t in members:
            market.register(t.account, t.public_box_key, t.split_seed(market.address), summary)
    return market, owner, aggregator, members, spec


def cid_of(platform: Platform, data: bytes) -> str:
    return str(platform.store.put(data))


def snapshot(market: MarketClient) -> dict:
    """Everything a failed call must leave unchanged."""
    rounds = {r: (market.round_state(r), market.submitted_mask(r)) for r in range(market.current_round() + 1)}
    accounts = [market.owner(), market.aggregator(), *market.trainers()]
    return {
        "phase": market.phase(),
        "round": market.current_round(),
        "trainers": market.trainers(),
        "rounds": rounds,
        "owed": {a: market.owed(a) for a in accounts},
        "balance": market.balance(),
        "total_owed": market.total_owed(),
    }


def assert_ledger_matches(market: MarketClient) -> MarketLedger:
    """The market rebuilt from its events alone equals what the contract's views say."""
    ledger = MarketLedger.rebuild(market)
    assert ledger_differences(market, ledger) == []
    assert market.balance() == market.total_owed() + market.undistributed() + market.bonds_held()
    return ledger
