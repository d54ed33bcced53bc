"""The embedded default: a directory of blocks named by CID. Nothing to start."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from multiformats import CID

from fedmarket.errors import ContentNotFoundError, StoreUnavailableError
from fedmarket.store.base import ContentStore
from fedmarket.store.cid import cid_text, digest_of, sha256_digest


class EmbeddedStore(ContentStore):
    """Blocks live at `root/<last two characters of the CID>/<CID>`, named by their raw-codec CID
    (blocks are keyed by digest, as in Kubo's blockstore); writes are atomic renames, so a crash
    never leaves a half-written block under a valid name. Nothing here is garbage-collected:
    pinning only checks that the block is held."""

    name = "embedded"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, cid: str | CID) -> Path:
        """Where the block under `cid` lives (a file's root block, for a file)."""
        digest = sha256_digest(cid) if isinstance(cid, CID) else None
        text = cid_text(digest if digest is not None else digest_of(cid))
        return self.root / text[-2:] / text

    def _put_block(self, cid: CID, data: bytes, *, pin: bool) -> None:
        target = self.path_of(cid)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)

    def _get_block(self, cid: CID) -> bytes:
        target = self.path_of(cid)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise ContentNotFoundError(f"no content for {cid} in {self.root}") from None
        except OSError as exc:  # the directory's disk or mount, not the content
            raise StoreUnavailableError(f"cannot read {self.root}: {exc}") from exc

    def has(self, cid: str | CID) -> bool:
        return self.path_of(cid).exists()

    def _pin(self, cid: CID) -> None:
        if not self.has(cid):
            raise ContentNotFoundError(f"cannot pin {cid}: not in {self.root}")
