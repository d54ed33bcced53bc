"""The structured reference string (KZG parameters) the proofs are made against.

Either a ceremony file the user supplies (`FEDMARKET_ZK_SRS_PATH`, a KZG SRS of at least the
circuit's logrows, such as one from the Ethereum KZG or a perpetual-powers-of-tau ceremony in EZKL's
format), or one generated here with `ezkl.gen_srs`. A generated SRS is NOT FOR PRODUCTION: whoever
generated it knows its toxic waste and can forge proofs. It is only for development and tests, and
every build that uses one says so in its report and in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ezkl

from fedmarket.errors import ConfigError, ZKError

log = logging.getLogger(__name__)

NOT_FOR_PRODUCTION = "locally generated SRS (ezkl.gen_srs): NOT FOR PRODUCTION, its generator can forge proofs"


def srs_for(logrows: int, cache_dir: Path, ceremony_file: Path | None) -> tuple[Path, str]:
    """(path, origin) of an SRS for `logrows`. Generated SRSs are cached per logrows."""
    if ceremony_file is not None:
        if not ceremony_file.is_file():
            raise ConfigError(f"FEDMARKET_ZK_SRS_PATH={ceremony_file} does not exist")
        return ceremony_file, f"ceremony file {ceremony_file}"
    path = cache_dir / "srs" / f"kzg{logrows}.srs"
    if not path.is_file():
        log.warning("%s (logrows %d, %s)", NOT_FOR_PRODUCTION, logrows, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            ezkl.gen_srs(str(tmp), logrows)
        except Exception as exc:
            raise ZKError(f"gen_srs failed for logrows {logrows}: {exc}") from exc
        tmp.replace(path)
    return path, NOT_FOR_PRODUCTION
