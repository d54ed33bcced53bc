"""The content store interface. Every backend checks bytes against their CID on every read."""

from __future__ import annotations

from abc import ABC, abstractmethod

from multiformats import CID

from fedmarket.errors import StoreError
from fedmarket.store import unixfs
from fedmarket.store.cid import parse_cid


class ContentStore(ABC):
    """Content-addressed bytes: `put` returns the CID, `get` returns bytes verified against it.
    Backends hold blocks (`unixfs`); content over a chunk is a file of several."""

    name: str = "store"

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        blocks = unixfs.encode(data)
        if len(blocks) == 1 and unixfs.file_links(data) is not None:
            raise StoreError(
                f"refusing to store {len(data)} bytes that read as a UnixFS file node: their CID "
                "would name that file instead when read back from its digest"
            )
        for block in blocks:
            self._put_block(block.cid, block.data, pin=pin and block is blocks[-1])
        return blocks[-1].cid

    def get(self, cid: str | CID) -> bytes:
        parsed = parse_cid(cid)
        return unixfs.assemble(parsed, self._get_block)

    def pin(self, cid: str | CID) -> None:
        """Keep the content (all its blocks) from garbage collection."""
        parsed = parse_cid(cid)
        if parsed.codec.name == "raw" and unixfs.file_links(self._get_block(parsed)) is not None:
            parsed = parsed.set(codec="dag-pb")
        self._pin(parsed)

    @abstractmethod
    def _put_block(self, cid: CID, data: bytes, *, pin: bool) -> None: ...

    @abstractmethod
    def _get_block(self, cid: CID) -> bytes:
        """Raw bytes of the block under `cid`; raise ContentNotFoundError if absent."""

    @abstractmethod
    def has(self, cid: str | CID) -> bool:
        """Whether the block under `cid` (a file's root, for a file) is held here."""

    @abstractmethod
    def _pin(self, cid: CID) -> None: ...
