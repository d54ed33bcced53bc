"""An IPFS node's RPC API (`/api/v0/...`, Kubo's and js-ipfs's) with httpx.

`ipfshttpclient` 0.7.0 refuses every Kubo from 0.8 on (its own version check), so fedmarket
speaks the HTTP API directly. Content goes in block by block (`block/put`), the blocks `unixfs`
makes, so the node's CIDs equal the ones fedmarket computes, and comes out block by block, each
checked against its CID: the node is not trusted with the bytes.
"""

from __future__ import annotations

import httpx
from multiformats import CID

from fedmarket.errors import CIDMismatchError, ContentNotFoundError, StoreError, StoreUnavailableError
from fedmarket.store.base import ContentStore
from fedmarket.store.cid import parse_cid

# what a node answers when it has not found a block: Kubo, Kubo past `timeout`, js-ipfs past it
_NOT_FOUND = ("not found", "context deadline exceeded", "request timed out")
_LOCAL_LOOKUP_S = 2.0  # js-ipfs ignores `offline` and looks until the timeout


class KuboStore(ContentStore):
    """`timeout_s` bounds how long the node may look for a block: a node that answers that it
    did not find it in that time has no such content (the uploader keeps it reachable); a node
    that does not answer at all is unavailable, a transient failure."""

    name = "kubo"

    def __init__(self, api_url: str, *, timeout_s: float = 30.0, client: httpx.Client | None = None):
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = client or httpx.Client(timeout=timeout_s + 10.0)

    def _rpc(
        self, command: str, *, params: dict | None = None, files: dict | None = None, timeout_s: float | None = None
    ) -> httpx.Response:
        url = f"{self.api_url}/api/v0/{command}"
        params = {**(params or {}), "timeout": f"{timeout_s or self.timeout_s:g}s"}
        try:
            response = self._client.post(url, params=params, files=files)
        except httpx.TransportError as exc:
            raise StoreUnavailableError(f"IPFS node at {self.api_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            message = _error_message(response)
            if any(text in message for text in _NOT_FOUND):
                raise ContentNotFoundError(f"IPFS node: {message}")
            raise StoreError(f"IPFS node: {command} failed ({response.status_code}): {message}")
        return response

    def _put_block(self, cid: CID, data: bytes, *, pin: bool) -> None:
        # `format` names the codec for Kubo (deprecated alias of cid-codec) and for js-ipfs (which
        # has no cid-codec); `version` keeps js-ipfs's dag-pb CIDs at v1 (Kubo: v1 already)
        params = {"format": cid.codec.name, "mhtype": "sha2-256", "version": "1", "pin": str(pin).lower()}
        response = self._rpc("block/put", params=params, files={"data": ("block", data)})
        returned = response.json().get("Key")
        if returned is None or parse_cid(returned) != cid:
            raise CIDMismatchError(f"the IPFS node stored the block as {returned}, expected {cid}")

    def _get_block(self, cid: CID) -> bytes:
        return self._rpc("block/get", params={"arg": str(cid)}).content

    def has(self, cid: str | CID) -> bool:
        try:
            params = {"arg": str(parse_cid(cid)), "offline": "true"}
            self._rpc("block/stat", params=params, timeout_s=min(self.timeout_s, _LOCAL_LOOKUP_S))
        except ContentNotFoundError:
            return False
        return True

    def _pin(self, cid: CID) -> None:
        self._rpc("pin/add", params={"arg": str(cid)})


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("Message", response.text))
    except ValueError:
        return response.text
