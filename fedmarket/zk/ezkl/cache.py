"""The build cache's housekeeping: what each circuit build holds, when a prover last used it, and
pruning the proving keys no one has used for a while.

Each build keeps its proving key, gigabytes at full size (`fedmarket bench zk`), and a new circuit
hash (another L, model, test-chunk size, column count or EZKL version) makes a new build beside
the old ones, so an aggregator's disk fills unless old keys go. Pruning removes only the proving
key: the compiled circuit, settings, verifying key, verifier and deployment records stay (1 to
4 MB at full size), and the next proof of that circuit sets it up again from them (toolchain._setup_again),
with the same verifying key, so markets whose verifiers were deployed for it go on. SRS files
(`srs/`) and the column choices are shared and kept. A setup that died part way (`.partial`) has
nothing worth keeping and is removed whole.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from pydantic import BaseModel

from fedmarket.errors import ZKError

USED = "last-used"  # touched on every cache hit; its mtime is the build's last use
PROVE_TIMES = "prove-seconds.json"  # the last proofs' durations, for an expected time
KEPT_TIMES = 5
PARTIAL = ".partial"  # a setup in progress, or one that died
PROVING_KEY = "pk.key"


class CachedBuild(BaseModel):
    """One directory of the build cache."""

    name: str
    bytes: int  # on disk, proving key included
    pk_bytes: int  # 0 once pruned
    last_used: float  # epoch seconds
    complete: bool  # False: a setup still running, or one that died

    @property
    def prunable_bytes(self) -> int:
        """What prune frees: the proving key, or a dead setup whole."""
        return self.pk_bytes if self.complete else self.bytes


def mark_used(build_dir: Path) -> None:
    (Path(build_dir) / USED).touch()


def record_prove_time(build_dir: Path, seconds: float) -> None:
    """Keep how long this build's proof took, among the last few (an estimate for the next)."""
    path = Path(build_dir) / PROVE_TIMES
    path.write_text(json.dumps([*_prove_times(path), round(seconds, 3)][-KEPT_TIMES:]))


def expected_prove_s(build_dir: Path) -> float | None:
    """The median of this build's last proofs on this machine; None before its first."""
    times = _prove_times(Path(build_dir) / PROVE_TIMES)
    return statistics.median(times) if times else None


def _prove_times(path: Path) -> list[float]:
    try:
        return [float(t) for t in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):  # none yet, or a file cut short: no estimate
        return []


def _last_used(path: Path) -> float:
    for marker in (path / USED, path / "ready"):
        if marker.is_file():
            return marker.stat().st_mtime
    return path.stat().st_mtime  # a partial build: when its setup last added a file


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cached_builds(cache_dir: Path) -> list[CachedBuild]:
    """Every circuit build under `cache_dir`, least recently used first."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    builds = [
        CachedBuild(
            name=path.name,
            bytes=_size(path),
            pk_bytes=(path / PROVING_KEY).stat().st_size if (path / PROVING_KEY).is_file() else 0,
            last_used=_last_used(path),
            complete=(path / "ready").is_file() and not path.name.endswith(PARTIAL),
        )
        for path in cache_dir.iterdir()
        if path.is_dir() and path.name != "srs"
    ]
    return sorted(builds, key=lambda b: b.last_used)


def prune(cache_dir: Path, unused_days: float, *, dry_run: bool = False, now: float | None = None) -> list[CachedBuild]:
    """Remove the proving keys of builds not used for `unused_days` days, and setups that have
    not written for that long; return those builds as they were. A prover that already opened a
    removed key still finishes; one that starts after sets the circuit up again."""
    if unused_days < 0:
        raise ZKError(f"unused_days must be at least 0, got {unused_days}")
    cutoff = (time.time() if now is None else now) - unused_days * 86_400
    stale = [b for b in cached_builds(cache_dir) if b.last_used < cutoff and (b.pk_bytes or not b.complete)]
    if not dry_run:
        for build in stale:
            path = Path(cache_dir) / build.name
            if build.complete:
                (path / PROVING_KEY).unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
    return stale
