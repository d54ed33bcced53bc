"""The committed contract artifacts are what solcjs builds from contracts/src today."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import REPO_ROOT


def test_committed_artifacts_are_fresh(tmp_path):
    subprocess.run(
        ["node", "contracts/compile.js", "--out", str(tmp_path)], cwd=REPO_ROOT, check=True, capture_output=True
    )
    committed = REPO_ROOT / "contracts" / "artifacts"
    built = sorted(p.name for p in tmp_path.glob("*.json"))
    assert built == sorted(p.name for p in committed.glob("*.json")), "artifact set differs: run `make contracts`"
    for name in built:
        fresh, stale = json.loads((tmp_path / name).read_text()), json.loads((committed / name).read_text())
        assert fresh["bytecode"] == stale["bytecode"] and fresh["abi"] == stale["abi"], (
            f"{name} is stale: run `make contracts`"
        )
