"""What a person sees in the Prefect UI, `make ui-check` (not part of `make test`): the market of
tests/test_e2e.py (deployments, worker, listener, four trainer daemons) on a real `prefect server`,
then headless Chromium renders the UI's pages. The rendered pages must show the runs and the
market's artifacts; the screenshots land in build/ui-check/ for a person to look at."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest

from tests.helpers import REPO_ROOT
from tests.market_processes import FEDMARKET, market_processes, wait_for

TRAINERS, ROUNDS = 4, 2
LOOKED_AT = ("-rounds", "-round-2-summary", "-round-2", "-summary", "-trainers", "-accuracy")  # after the market's key
SHOTS = REPO_ROOT / "build" / "ui-check"
pytestmark = pytest.mark.ui
# Chromium as the environment's probe runs it: no sandbox as root, and no background traffic to
# Google's hosts, which a closed network refuses many at a time
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
]


def chromium(url: str, tmp_path, *, screenshot: str | None = None) -> str:
    """Render `url` once its scripts settle; the page's DOM, and a PNG under build/ui-check/."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: `make ui-check` installs Debian's package")
    args = [binary, *FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
    if screenshot:
        shot = subprocess.run([*args, f"--screenshot={SHOTS / screenshot}", url], capture_output=True, timeout=180)
        assert (SHOTS / screenshot).is_file(), shot.stderr.decode()[-2000:]
    done = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    return done.stdout


def test_what_an_operator_sees_in_the_prefect_ui(anvil_url, tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    links = {"FEDMARKET_IPFS_GATEWAY_URL": "https://ipfs.io", "FEDMARKET_EXPLORER_URL": "https://etherscan.io"}
    with market_processes(tmp_path, anvil_url, trainers=TRAINERS, rounds=ROUNDS, env=links) as run:
        procs, api, market = run.procs, run.api, run.market
        daemons = [
            procs.start(
                f"trainer-{i}",
                [FEDMARKET, "trainer", "run", "--market", market, "--data", run.files["trainers"][i]],
                FEDMARKET_KEY_FILE=run.keys[f"trainer-{i}"]["key_file"],
            )
            for i in range(TRAINERS)
        ]
        wait_for(lambda: all(d.poll() is not None for d in daemons), 900, "the trainers to withdraw", procs)
        wait_for(lambda: audited(api), 180, "the audit run", procs)
        ui = api.removesuffix("/api")
        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}).json()
        round_run = next(r for r in runs if r["name"].startswith("round-2-"))
        artifacts = {a["key"]: a for a in httpx.post(f"{api}/artifacts/latest/filter", json={}).json() if a["key"]}
        market_key = next(k for k in artifacts if k.endswith("-rounds")).removesuffix("-rounds")
        latest = {suffix: artifacts[market_key + suffix]["latest_id"] for suffix in LOOKED_AT}
        pages = {
            "runs.png": f"{ui}/runs",
            "round-run.png": f"{ui}/runs/flow-run/{round_run['id']}",
            "artifacts.png": f"{ui}/artifacts",
            **{f"artifact{suffix}.png": f"{ui}/artifacts/artifact/{i}" for suffix, i in latest.items()},
            "deployments.png": f"{ui}/deployments",
            "automations.png": f"{ui}/automations",
        }
        rendered = {name: chromium(url, tmp_path, screenshot=name) for name, url in pages.items()}
        query = {"logs": {"flow_run_id": {"any_": [round_run["id"]]}}, "limit": 200}
        logs = [entry["message"] for entry in httpx.post(f"{api}/logs/filter", json=query).json()]
        (SHOTS / "pages.json").write_text(json.dumps(pages, indent=2))

    short = market.lower()[:8]
    assert "round-2-" in rendered["runs.png"] and "settle-" in rendered["runs.png"]
    assert f"market:{market.lower()}" in rendered["round-run.png"]  # the run's tags
    # the round's decisions reach its run's logs at INFO: who was kept, the transaction and its gas
    assert any("4 kept of 4 submitted; finalizeRound 0x" in line for line in logs), logs
    assert any("round 2: not proven" in line for line in logs), logs
    rounds = rendered["artifact-rounds.png"]
    assert "rounds side by side" in rounds and rounds.count(">finalized<") == ROUNDS and short in rounds.lower()
    assert "final test accuracy" in rendered["artifact-summary.png"]
    plot = rendered["artifact-accuracy.png"]
    assert '<img src="data:image/png;base64,' in plot and "Image URL" not in plot  # the plot, not its URI
    assert "`" not in rendered["artifact-round-2-summary.png"].split("<body", 1)[1]  # no code marks in links
    assert "fedmarket round when submissions are in" in rendered["automations.png"]
    assert "advance-all" in rendered["deployments.png"]
    print(f"\nUI check: {len(pages)} pages rendered into {SHOTS.relative_to(REPO_ROOT)}/ ({time.strftime('%H:%M:%S')})")


def audited(api: str) -> bool:
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}).json()
    return any(r["name"].startswith("audit-") and r["state_type"] == "COMPLETED" for r in runs)
