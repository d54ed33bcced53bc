"""slither (PyPI slither-analyzer, in its own venv) over the contracts, compiled by forge through
the solcjs wrapper: no high or medium finding, and every low finding justified in the README."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.helpers import REPO_ROOT

CONTRACTS = REPO_ROOT / "contracts"
SLITHER = REPO_ROOT / ".venv" / "slither" / "bin" / "slither"


def justified_checks() -> set[str]:
    """Check names listed as `- \\`check\\`: why` under the README's slither section."""
    text = (CONTRACTS / "README.md").read_text()
    section = text.split("## Slither", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([a-z0-9-]+)`:", section, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    if not SLITHER.exists():
        pytest.fail(".venv/slither is missing: run `make setup`")
    out = tmp_path_factory.mktemp("slither") / "slither.json"
    env = {**os.environ, "PATH": f"{REPO_ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(SLITHER), ".", "--filter-paths", "node_modules|test/", "--json", str(out)],
        cwd=CONTRACTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), f"slither produced no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(out.read_text())
    assert report["success"], report.get("error")
    return report["results"].get("detectors", [])


def test_slither_analyses_the_market_contracts(findings):
    # the run is only meaningful if slither saw our sources: it always flags their deadlines
    assert any("DataMarket.sol" in f["description"] for f in findings)


def test_no_high_or_medium_findings(findings):
    serious = [f"{f['impact']} {f['check']}: {f['description']}" for f in findings if f["impact"] in ("High", "Medium")]
    assert serious == []


def test_every_low_finding_is_justified_in_the_readme(findings):
    unjustified = {f["check"] for f in findings if f["impact"] == "Low"} - justified_checks()
    assert unjustified == set(), f"fix these or justify them under '## Slither' in contracts/README.md: {unjustified}"
