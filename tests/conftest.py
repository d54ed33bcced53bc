from __future__ import annotations

import os
from contextlib import contextmanager

# The two xdist workers share two cores: one OpenMP and BLAS thread each, inherited by every
# subprocess, else torch's waiting OpenMP threads spin against the other worker's and a small
# training step runs many times slower. Set before numpy and torch load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# CLI subprocesses (demo, bench) start an ephemeral Prefect server: its first start on a fresh
# PREFECT_HOME migrates a new database, past Prefect's 20 s default on a busy 2-core machine
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# transient failures are retried with exponential backoff from this delay: short in tests
os.environ.setdefault("FEDMARKET_RETRY_DELAY_S", "0.05")

import pytest
from prefect.settings import temporary_settings
from prefect.testing.utilities import prefect_test_harness

from fedmarket.context import Platform, use_platform
from fedmarket.settings import Settings

# The heaviest files first, by `make test --durations`: each of the two workers takes the next file
# when it is free (Makefile: --dist loadfile --no-loadscope-reorder), so the longest start first
# and both workers end together (longest-processing-time-first). xdist's own order, most tests
# first, would start the one-test multi-process market last.
HEAVIEST_FIRST = (
    "test_e2e.py",
    "test_zk_chain.py",
    "test_resume.py",
    "test_faults.py",
    "test_demo.py",
    "test_cli.py",
    "test_zk_flow.py",
    "test_zk_settlement.py",
    "test_zk_split.py",
    "test_zk.py",
    "test_zk_rule.py",
    "test_zk_norm.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def prefect_backend():
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(updates={"flows.heartbeat_frequency": None}),
    ):
        yield


def make_platform(tmp_path) -> Platform:
    return Platform.from_settings(
        Settings(
            store_dir=tmp_path / "blocks",
            results_dir=tmp_path / "results",
            state_dir=tmp_path / "state",
            secagg_check_s=0.0,  # in-process trainers check every bundle before the round opens
        )
    )


@pytest.fixture
def platform(tmp_path):
    p = make_platform(tmp_path)
    with use_platform(p):
        yield p


def _built_once(tmp_path_factory, worker_id: str, build_in):
    """`build_in(cache_dir)` in this worker's own circuit cache, set up once per test run: the first
    worker builds under a lock in the workers' shared temp directory (a setup takes half a minute
    on 2 cores), every worker copies the build. Copied, not shared: deployments are recorded in
    the build directory per chain id and address, and each worker has its own anvil."""
    import shutil

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "zk-shared"
    own = base / "zk-cache"
    with FileLock(f"{shared}.lock"):
        built = build_in(shared)
        shutil.copytree(built.dir, own / built.dir.name, dirs_exist_ok=True)
        shutil.copytree(shared / "srs", own / "srs", dirs_exist_ok=True)
        for choice in shared.glob("columns-*.json"):
            shutil.copy2(choice, own)
    return build_in(own)


@pytest.fixture(scope="session")
def round_build(tmp_path_factory, worker_id):
    """The tiny round circuit (L = 4 slots of 8 parameters, inputs under KZG commitments), built
    once for the session."""
    from fedmarket.zk import build_round_circuit

    return _built_once(
        tmp_path_factory, worker_id, lambda cache: build_round_circuit(4, 8, Settings(zk_cache_dir=cache))
    )


@pytest.fixture(scope="session")
def hashed_round_build(tmp_path_factory, worker_id):
    """The tiny round circuit with Poseidon-hashed inputs, as markets that prove their settlement use."""
    from fedmarket.zk import build_round_circuit

    return _built_once(
        tmp_path_factory,
        worker_id,
        lambda cache: build_round_circuit(4, 8, Settings(zk_cache_dir=cache), commitment="poseidon"),
    )


@pytest.fixture(scope="session")
def norm_build(tmp_path_factory, worker_id):
    """The tiny norm-bound circuit (8 parameters: LR on 3 features and 2 classes)."""
    from fedmarket.zk import build_norm_circuit

    return _built_once(tmp_path_factory, worker_id, lambda cache: build_norm_circuit(8, Settings(zk_cache_dir=cache)))


@pytest.fixture(scope="session")
def settlement_build(tmp_path_factory, worker_id):
    """The tiny settlement circuit (L = 4, LR on 3 features and 2 classes, 10 test rows)."""
    from fedmarket.zk.settlement_proof import build_settlement_circuit
    from fedmarket_schemas.market import ModelConfig

    return _built_once(
        tmp_path_factory,
        worker_id,
        lambda cache: build_settlement_circuit(
            4, ModelConfig(in_features=3, classes=2), 10, Settings(zk_cache_dir=cache)
        ),
    )


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory):
    """A real node for the session: anvil from npm `@foundry-rs/anvil`, on a free loopback port."""
    from tests.helpers import anvil_args, free_port, local_server

    port = free_port()
    args = anvil_args(port)
    with local_server("anvil", args, port, tmp_path_factory.mktemp("anvil")):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def ipfs_api_url(tmp_path_factory):
    """A real IPFS node for the session: js-ipfs from npm (tests/ipfs/node.mjs), offline, its RPC
    API on a free loopback port."""
    from tests.helpers import REPO_ROOT, free_port, local_server

    if not (REPO_ROOT / "node_modules" / "ipfs-core").exists():
        pytest.fail("node_modules/ipfs-core is missing: run `make setup`")
    root, port = tmp_path_factory.mktemp("ipfs"), free_port()
    args = ["node", str(REPO_ROOT / "tests" / "ipfs" / "node.mjs"), str(root / "repo"), str(port)]
    with local_server("ipfs", args, port, root):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def reverted_after(platform: Platform):
    """`platform` (on anvil) in use, and every chain change made meanwhile undone afterwards
    (evm_snapshot/evm_revert): tests share one costly state, each starting from it.

    The ZK suites use it on the session's anvil node: the in-process EVM runs the verifier's
    pairings and scalar multiplications in pure Python (py_ecc), seconds per proof checked and
    several checks per test, where anvil takes milliseconds."""
    snap = platform.chain.snapshot()
    with use_platform(platform):
        yield platform
    platform.chain.revert_to(snap)


@pytest.fixture(params=["in-process", "anvil"])
def any_platform(request, tmp_path):
    """The same test against the in-process EVM and against a real node."""
    url = request.getfixturevalue("anvil_url") if request.param == "anvil" else None
    p = Platform.from_settings(Settings(store_dir=tmp_path / "blocks", chain_rpc_url=url))
    with use_platform(p):
        yield p
