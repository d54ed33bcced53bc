"""The build cache's housekeeping: a cache hit records its use; prune removes the proving keys no
prover used within the window and dead setups, and keeps the rest of each build, the SRS and the
column choices; a pruned circuit is set up again with the same keys, or refuses with another SRS."""

from __future__ import annotations

import json
import os
import shutil
import time

import ezkl
import pytest
from typer.testing import CliRunner

from fedmarket.errors import ZKError
from fedmarket.settings import Settings
from fedmarket.zk import build_round_circuit
from fedmarket.zk.ezkl.cache import USED, cached_builds, prune
from fedmarket_cli import app

DAY = 86_400
STALE = "round-L9-d9-0000000000000000"
DEAD = "round-L7-d9-1111111111111111.partial"


@pytest.fixture
def cache(round_build, tmp_path):
    """A copy of the session's cache (the tiny round circuit and its SRS), used 3 days ago, beside
    a build last used 40 days ago and a setup that died 10 days ago."""
    root = tmp_path / "zk"
    session = round_build.dir.parent  # other tests add their builds there: copy only this one
    shutil.copytree(round_build.dir, root / round_build.dir.name)
    shutil.copytree(session / "srs", root / "srs")
    for choice in session.glob("columns-*.json"):
        shutil.copy(choice, root)
    now = time.time()
    current = root / round_build.dir.name
    (current / USED).touch()
    os.utime(current / USED, (now - 3 * DAY, now - 3 * DAY))
    stale = root / STALE
    stale.mkdir()
    (stale / "pk.key").write_bytes(b"\0" * 1000)
    (stale / "vk.key").write_bytes(b"\0" * 7)
    (stale / "ready").write_text("{}")
    os.utime(stale / "ready", (now - 40 * DAY, now - 40 * DAY))
    dead = root / DEAD
    dead.mkdir()
    (dead / "circuit.onnx").write_bytes(b"\1" * 10)
    os.utime(dead, (now - 10 * DAY, now - 10 * DAY))
    return root, current, now


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_cache_hit_records_its_use(cache):
    root, current, now = cache
    before = (current / USED).stat().st_mtime
    again = build_round_circuit(4, 8, Settings(zk_cache_dir=root))
    assert again.dir == current
    assert before < (current / USED).stat().st_mtime >= now - 1  # the file clock is coarser than time.time()


def test_builds_are_listed_least_recently_used_first_with_their_sizes(cache):
    root, current, _ = cache
    builds = cached_builds(root)
    assert [b.name for b in builds] == [STALE, DEAD, current.name]
    assert [b.complete for b in builds] == [True, False, True]
    assert [(b.bytes, b.pk_bytes, b.prunable_bytes) for b in builds[:2]] == [(1000 + 7 + 2, 1000, 1000), (10, 0, 10)]
    assert builds[2].bytes == sum(f.stat().st_size for f in current.rglob("*") if f.is_file())
    assert builds[2].pk_bytes == (current / "pk.key").stat().st_size > 0


def test_prune_removes_unused_proving_keys_and_dead_setups_and_keeps_the_rest(cache):
    root, current, now = cache
    before = _files(root)
    assert any(f.startswith("srs/") for f in before) and any(f.startswith("columns-") for f in before)

    would = prune(root, 7, dry_run=True, now=now)
    assert [b.name for b in would] == [STALE, DEAD]
    assert _files(root) == before  # a dry run removes nothing

    pruned = prune(root, 7, now=now)
    assert [b.name for b in pruned] == [STALE, DEAD]
    assert _files(root) == [f for f in before if f != f"{STALE}/pk.key" and not f.startswith(DEAD)]
    assert prune(root, 7, now=now) == []  # nothing left to free there
    assert [b.pk_bytes for b in cached_builds(root) if b.name == STALE] == [0]

    assert build_round_circuit(4, 8, Settings(zk_cache_dir=root)).dir == current  # a hit, marked used
    assert prune(root, 2, now=now) == []


def test_a_pruned_circuit_is_set_up_again_with_the_same_keys(cache, round_build):
    """Setup on the kept compiled circuit and SRS gives back the very keys, so a verifier deployed
    before the prune accepts the proofs made after it."""
    root, current, _ = cache
    assert [b.name for b in prune(root, 0, now=time.time() + 1)] == [STALE, DEAD, current.name]
    assert not (current / "pk.key").exists() and (current / "vk.key").is_file()
    rebuilt = build_round_circuit(4, 8, Settings(zk_cache_dir=root))
    assert rebuilt.dir == current
    assert rebuilt.vk.read_bytes() == round_build.vk.read_bytes()
    assert rebuilt.pk.read_bytes() == round_build.pk.read_bytes()
    assert rebuilt.setup_report == round_build.setup_report


def test_setting_up_again_with_another_srs_is_refused(cache):
    root, current, _ = cache
    prune(root, 0, now=time.time() + 1)
    logrows = json.loads((current / "settings.json").read_text())["run_args"]["logrows"]
    srs = root / "srs" / f"kzg{logrows}.srs"
    srs.unlink()
    ezkl.gen_srs(str(srs), logrows)  # another random SRS of the same size
    with pytest.raises(ZKError, match="another verifying key.*not the SRS it was built with"):
        build_round_circuit(4, 8, Settings(zk_cache_dir=root))
    assert not (current / "pk.key").exists()  # no key for another SRS left behind
    assert [p.name for p in current.iterdir() if p.name.startswith("setup-again-")] == []


def test_a_build_that_lost_both_keys_says_so(cache):
    root, current, _ = cache
    (current / "pk.key").unlink()
    (current / "vk.key").unlink()
    with pytest.raises(ZKError, match="lost both its keys: remove the directory"):
        build_round_circuit(4, 8, Settings(zk_cache_dir=root))


def test_prune_refuses_a_negative_window(tmp_path):
    with pytest.raises(ZKError, match="unused_days"):
        prune(tmp_path, -1)


def test_the_cli_lists_and_prunes(cache, monkeypatch):
    root, current, _ = cache
    monkeypatch.setenv("FEDMARKET_ZK_CACHE_DIR", str(root))
    runner = CliRunner()
    listed = runner.invoke(app, ["zk", "cache", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["name"] for r in json.loads(listed.stdout)["rows"]] == [STALE, DEAD, current.name]

    pruned = runner.invoke(app, ["zk", "prune", "--unused-days", "7", "--json"])
    assert pruned.exit_code == 0, pruned.output
    assert [r["name"] for r in json.loads(pruned.stdout)["rows"]] == [STALE, DEAD]
    assert [(b.name, b.pk_bytes) for b in cached_builds(root)][:1] == [(STALE, 0)]

    table = runner.invoke(app, ["zk", "cache"], terminal_width=200)
    assert table.exit_code == 0 and "pruned" in table.output

    negative = runner.invoke(app, ["zk", "prune", "--unused-days", "-1"])
    assert negative.exit_code == 2 and "unused-days" in negative.output
