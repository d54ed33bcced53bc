"""The layout's guarantees: round steps cannot silently stop caching, task retries come from the
settings, the platform in use is scoped to its context, and an installed wheel (no checkout)
finds its contracts and shadows no other distribution's packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile

import pytest

from fedmarket.context import Platform, current_platform, use_platform
from fedmarket.errors import ConfigError
from fedmarket.settings import Settings
from fedmarket_tasks.cache import round_step, step_key
from tests.helpers import REPO_ROOT


def test_a_round_step_cannot_lose_its_cache_key():
    with pytest.raises(ConfigError, match="keyword-only"):

        @round_step()
        def no_key(x: int) -> int:
            return x

    with pytest.raises(ConfigError, match="keyword-only"):

        @round_step()
        def optional_key(x: int, *, key: str = "") -> int:
            return x

    @round_step()
    def step(x: int, *, key: str) -> int:
        return x

    with pytest.raises(TypeError, match="key"):
        step.fn(1)

    class Context:
        class task:
            name = "step"

    assert step_key(Context, {"x": 1, "key": "abc"}) == "step-abc"
    with pytest.raises(ConfigError, match="needs its key"):
        step_key(Context, {"x": 1, "key": ""})


def test_task_retries_come_from_the_settings():
    code = (
        "import json; from fedmarket_tasks.chain_ops import open_round; from fedmarket_tasks.fetch import fetch_updates; "
        "print(json.dumps([open_round.retries, open_round.retry_delay_seconds, fetch_updates.retries]))"
    )
    env = {**os.environ, "FEDMARKET_RETRIES": "4", "FEDMARKET_RETRY_DELAY_S": "0.5"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    retries, delays, fetch_retries = json.loads(done.stdout.strip().splitlines()[-1])
    assert (retries, fetch_retries) == (4, 4)
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_the_platform_in_use_is_the_innermost_of_this_context(tmp_path):
    outer = Platform.from_settings(Settings(store_dir=tmp_path / "outer"))
    inner = Platform.from_settings(Settings(store_dir=tmp_path / "inner"))
    seen = {}
    with use_platform(outer):
        with use_platform(inner):
            assert current_platform() is inner
            thread = threading.Thread(target=lambda: seen.setdefault("other", current_platform()))
            thread.start()
            thread.join()
        assert current_platform() is outer
    assert seen["other"] is not inner  # another thread sees its own context, not this block's


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("fedmarket-*.whl")
    return path


def test_the_wheel_installs_only_fedmarket_packages_with_the_contracts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {
        "fedmarket",
        "fedmarket_schemas",
        "fedmarket_tasks",
        "fedmarket_flows",
        "fedmarket_cli",
        "fedmarket_benchmarks",
        "fedmarket_contracts",
    }
    for artifact in ("DataMarket", "MarketFactory", "VerifierFactory", "EzklRoundVerifier", "EzklSettlementVerifier"):
        assert f"fedmarket_contracts/artifacts/{artifact}.json" in names
    assert "fedmarket_contracts/compile.js" in names
    packaged = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    on_disk = set()
    for folder, name in [
        ("fedmarket", "fedmarket"),
        ("schemas", "fedmarket_schemas"),
        ("tasks", "fedmarket_tasks"),
        ("flows", "fedmarket_flows"),
        ("cli", "fedmarket_cli"),
        ("benchmarks", "fedmarket_benchmarks"),
    ]:
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            on_disk.add(".".join([name, *init.parent.relative_to(REPO_ROOT / folder).parts]))
    assert on_disk <= packaged  # every package of the tree is in pyproject's list


def test_an_installed_wheel_runs_a_market_without_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")}
    env |= {"PYTHONPATH": str(target), "FEDMARKET_STORE_DIR": str(tmp_path / "blocks")}
    code = (
        "import json, fedmarket, fedmarket_contracts; from fedmarket_cli import app; "
        "print(json.dumps([fedmarket.__file__, str(fedmarket_contracts.artifacts_dir())])); "
        "app(['bench', 'gas', '--trainers', '3', '--params', '650', '--json'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    located, payload = done.stdout.strip().splitlines()[-2:]
    package, artifacts = json.loads(located)
    assert package.startswith(str(target)) and artifacts.startswith(str(target))
    ops = {row["op"] for row in json.loads(payload)["rows"]}
    assert {"createMarket", "submit", "finalizeRound", "settle", "withdraw"} <= ops


def test_a_flow_run_or_cli_process_loads_opacus_and_sklearn_only_where_it_uses_them():
    """Every flow run and CLI call is a new process: Opacus (torch.distributed) and scikit-learn
    are a large part of its start, so the round, settlement and CLI modules import them lazily."""
    code = (
        "import sys, fedmarket_cli, fedmarket_flows.round, fedmarket_flows.settlement, fedmarket_flows.trainer\n"
        "print(sorted(m for m in ('opacus', 'sklearn') if m in sys.modules))\n"
        "from fedmarket.ml.data import load_digits_dataset\n"
        "from fedmarket.ml.privacy import spent\n"
        "from fedmarket_schemas.market import DifferentialPrivacy, TrainingConfig\n"
        "load_digits_dataset(); dp = DifferentialPrivacy(noise_multiplier=1.0, epsilon_budget=8)\n"
        "spent(TrainingConfig(dp=dp), 100, 1)\n"
        "print(sorted(m for m in ('opacus', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "['opacus', 'sklearn']"]
