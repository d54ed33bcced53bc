from __future__ import annotations

import json

import httpx
import pytest

from fedmarket.errors import CIDMismatchError, ContentNotFoundError, InvalidCIDError, StoreUnavailableError
from fedmarket.store import EmbeddedStore, KuboStore, cid_for, cid_from_digest, digest_of, parse_cid


def test_cid_matches_ipfs_raw_block_cid():
    # `ipfs block put --cid-codec raw` of b"hello" gives this CID
    assert str(cid_for(b"hello")) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"


def test_digest_round_trip():
    cid = cid_for(b"payload")
    assert len(digest_of(cid)) == 32
    assert cid_from_digest(digest_of(cid)) == cid


def test_embedded_put_get(tmp_path):
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"some bytes")
    assert store.has(cid) and store.get(str(cid)) == b"some bytes"
    assert store.put(b"some bytes") == cid  # idempotent


def test_tampered_bytes_are_refused_and_left_in_place(tmp_path):
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"original")
    store.path_of(cid).write_bytes(b"tampered")
    with pytest.raises(CIDMismatchError, match=str(cid)):
        store.get(cid)
    assert store.path_of(cid).read_bytes() == b"tampered"  # evidence kept, nothing deleted


def test_missing_and_invalid_cids(tmp_path):
    store = EmbeddedStore(tmp_path)
    with pytest.raises(ContentNotFoundError):
        store.get(cid_for(b"never stored"))
    with pytest.raises(InvalidCIDError):
        store.get("not-a-cid")
    dag_pb_v0 = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u"
    with pytest.raises(InvalidCIDError, match="raw codec"):
        parse_cid(dag_pb_v0)


class FakeKubo:
    """Speaks the subset of Kubo's RPC API the backend uses, over httpx's in-process transport.
    It checks the request shape (POST, raw codec, sha2-256) and can be told to return other bytes."""

    def __init__(self, corrupt: bool = False):
        self.blocks: dict[str, bytes] = {}
        self.pins: set[str] = set()
        self.corrupt = corrupt

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        command = request.url.path.removeprefix("/api/v0/")
        params = dict(request.url.params)
        if command == "block/put":
            assert params["cid-codec"] == "raw" and params["mhtype"] == "sha2-256"
            body = request.read()
            data = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
            cid = str(cid_for(data))
            self.blocks[cid] = data
            if params.get("pin") == "true":
                self.pins.add(cid)
            return httpx.Response(200, json={"Key": cid, "Size": len(data)})
        if command in ("block/get", "block/stat", "pin/add"):
            cid = params["arg"]
            if cid not in self.blocks:
                return httpx.Response(500, json={"Message": "block was not found locally (offline)", "Code": 0})
            if command == "pin/add":
                self.pins.add(cid)
                return httpx.Response(200, json={"Pins": [cid]})
            if command == "block/stat":
                return httpx.Response(200, json={"Key": cid, "Size": len(self.blocks[cid])})
            return httpx.Response(200, content=b"x" + self.blocks[cid] if self.corrupt else self.blocks[cid])
        return httpx.Response(404, text=json.dumps({"Message": f"unknown command {command}"}))


def kubo(fake: FakeKubo) -> KuboStore:
    return KuboStore("http://127.0.0.1:5001", client=httpx.Client(transport=httpx.MockTransport(fake)))


def test_kubo_backend_round_trip_and_pin():
    fake = FakeKubo()
    store = kubo(fake)
    cid = store.put(b"update bytes")
    assert str(cid) in fake.pins
    assert store.get(cid) == b"update bytes" and store.has(cid)
    assert not store.has(cid_for(b"other"))
    with pytest.raises(ContentNotFoundError):
        store.get(cid_for(b"other"))


def test_kubo_backend_checks_bytes_against_cid():
    fake = FakeKubo(corrupt=True)
    store = kubo(fake)
    cid = store.put(b"honest bytes")
    with pytest.raises(CIDMismatchError):
        store.get(cid)


def test_kubo_unreachable_is_a_transient_error():
    store = KuboStore("http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.put(b"x")
