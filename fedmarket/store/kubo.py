"""Kubo (go-ipfs) backend over its documented RPC API (`/api/v0/...`) with httpx.

`ipfshttpclient` 0.7.0 refuses every Kubo from 0.8 on (its own version check), so fedmarket
speaks the HTTP API directly. Content is added as a single raw block (`block/put` with the raw
codec and sha2-256), so Kubo's CID equals the CID fedmarket computes locally, whatever the size:
`add` would chunk files over 256 KiB into a dag-pb tree with a different root CID.
"""

from __future__ import annotations

import httpx
from multiformats import CID

from fedmarket.errors import CIDMismatchError, ContentNotFoundError, StoreError, StoreUnavailableError
from fedmarket.store.base import ContentStore
from fedmarket.store.cid import parse_cid


class KuboStore(ContentStore):
    name = "kubo"

    def __init__(self, api_url: str, *, timeout_s: float = 30.0, client: httpx.Client | None = None):
        self.api_url = api_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout_s)

    def _rpc(self, command: str, *, params: dict | None = None, files: dict | None = None) -> httpx.Response:
        url = f"{self.api_url}/api/v0/{command}"
        try:
            response = self._client.post(url, params=params, files=files)
        except httpx.TransportError as exc:
            raise StoreUnavailableError(f"Kubo at {self.api_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            message = _error_message(response)
            if "not found" in message or "no link named" in message or "block was not found" in message:
                raise ContentNotFoundError(f"Kubo: {message}")
            raise StoreError(f"Kubo {command} failed ({response.status_code}): {message}")
        return response

    def _put(self, cid: CID, data: bytes, *, pin: bool) -> None:
        params = {
            "cid-codec": "raw",
            "mhtype": "sha2-256",
            "pin": "true" if pin else "false",
            "allow-big-block": "true",
        }
        response = self._rpc("block/put", params=params, files={"data": ("block", data)})
        returned = response.json().get("Key")
        if returned is None or parse_cid(returned) != cid:
            raise CIDMismatchError(f"Kubo stored the block as {returned}, expected {cid}")

    def _get(self, cid: CID) -> bytes:
        return self._rpc("block/get", params={"arg": str(cid)}).content

    def has(self, cid: str | CID) -> bool:
        try:
            self._rpc("block/stat", params={"arg": str(parse_cid(cid)), "offline": "true"})
        except ContentNotFoundError:
            return False
        return True

    def pin(self, cid: str | CID) -> None:
        self._rpc("pin/add", params={"arg": str(parse_cid(cid))})


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("Message", response.text))
    except ValueError:
        return response.text
