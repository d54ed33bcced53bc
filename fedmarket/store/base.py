"""The content store interface. Every backend checks bytes against their CID on every read."""

from __future__ import annotations

from abc import ABC, abstractmethod

from multiformats import CID

from fedmarket.store.cid import cid_for, parse_cid, verify


class ContentStore(ABC):
    """Content-addressed bytes: `put` returns the CID, `get` returns bytes verified against it."""

    name: str = "store"

    def put(self, data: bytes, *, pin: bool = True) -> CID:
        cid = cid_for(data)
        self._put(cid, data, pin=pin)
        return cid

    def get(self, cid: str | CID) -> bytes:
        parsed = parse_cid(cid)
        data = self._get(parsed)
        verify(parsed, data)
        return data

    @abstractmethod
    def _put(self, cid: CID, data: bytes, *, pin: bool) -> None: ...

    @abstractmethod
    def _get(self, cid: CID) -> bytes:
        """Raw bytes under `cid`; raise ContentNotFoundError if absent."""

    @abstractmethod
    def has(self, cid: str | CID) -> bool: ...

    @abstractmethod
    def pin(self, cid: str | CID) -> None: ...
