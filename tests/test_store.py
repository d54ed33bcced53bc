"""The content store's contract, on the embedded store and on a real IPFS node (js-ipfs over its
RPC API, `ipfs_api_url`), with content of one block and content chunked into a UnixFS file."""

from __future__ import annotations

import os

import httpx
import pytest
from multiformats import CID, multihash

from fedmarket.errors import CIDMismatchError, ContentNotFoundError, InvalidCIDError, StoreError, StoreUnavailableError
from fedmarket.store import (
    EmbeddedStore,
    KuboStore,
    cid_for,
    cid_from_digest,
    cid_text,
    digest_of,
    parse_cid,
    sha256_digest,
    unixfs,
)

SMALL = b"update bytes"
LARGE = os.urandom(3 * unixfs.CHUNK_SIZE + 1000)  # 4 leaves under one root


@pytest.fixture(params=["embedded", "ipfs"])
def store(request, tmp_path):
    if request.param == "embedded":
        return EmbeddedStore(tmp_path / "blocks")
    return KuboStore(request.getfixturevalue("ipfs_api_url"), timeout_s=1.0)


def node_add(api: str, data: bytes, **params) -> CID:
    """The CID the node's own importer gives `data` (`ipfs add --cid-version=1`)."""
    response = httpx.post(
        f"{api}/api/v0/add", params={"cid-version": "1", "pin": "false", **params}, files={"f": data}, timeout=120
    )
    return parse_cid(response.json()["Hash"])


def test_cid_matches_ipfs_raw_block_cid():
    # `ipfs block put --cid-codec raw` of b"hello" gives this CID
    assert str(cid_for(b"hello")) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"


@pytest.mark.parametrize("size", [5, unixfs.CHUNK_SIZE, unixfs.CHUNK_SIZE + 1, 3_000_000])
def test_cids_are_those_an_ipfs_node_computes(ipfs_api_url, size):
    data = os.urandom(size)
    assert cid_for(data) == node_add(ipfs_api_url, data)
    assert cid_for(data).codec.name == ("raw" if size <= unixfs.CHUNK_SIZE else "dag-pb")


@pytest.mark.parametrize(("chunks", "nodes"), [(174, 1), (175, 2 + 1), (174 * 2 + 1, 3 + 1)])
def test_balanced_layout_matches_the_node_past_one_level(ipfs_api_url, chunks, nodes):
    data = os.urandom(chunks * 256 - 7)
    blocks = unixfs.encode(data, chunk_size=256)
    assert blocks[-1].cid == node_add(ipfs_api_url, data, chunker="size-256")
    links = [unixfs.file_links(b.data) for b in blocks if b.cid.codec.name == "dag-pb"]
    assert len(links) == nodes and max(len(x) for x in links) == unixfs.MAX_LINKS


def test_digest_round_trip():
    cid = cid_for(b"payload")
    assert len(digest_of(cid)) == 32
    assert cid_from_digest(digest_of(cid)) == cid


def test_cid_text_is_the_text_multiformats_prints():
    assert cid_text(digest_of(cid_for(b"hello"))) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    for digest in [bytes(32), b"\xff" * 32, *(os.urandom(32) for _ in range(50))]:
        assert cid_text(digest) == str(cid_from_digest(digest))
    with pytest.raises(InvalidCIDError, match="32 bytes"):
        cid_text(bytes(31))


def test_sha256_digest_reads_the_multihash_of_either_codec():
    file_root = cid_for(LARGE)
    assert file_root.codec.name == "dag-pb" and sha256_digest(file_root) == bytes(file_root.raw_digest)
    assert sha256_digest(cid_for(SMALL)) == digest_of(cid_for(SMALL))
    other = CID("base32", 1, "raw", multihash.digest(SMALL, "sha2-512"))
    assert sha256_digest(other) is None


def test_embedded_blocks_are_named_by_their_raw_cid(tmp_path):
    store = EmbeddedStore(tmp_path)
    root = store.put(LARGE)
    name = str(cid_from_digest(digest_of(root)))
    assert store.path_of(root) == store.path_of(str(root)) == tmp_path / name[-2:] / name
    assert sorted(p.name for p in tmp_path.glob("*/b*")) == sorted(
        str(cid_from_digest(bytes(b.cid.raw_digest))) for b in unixfs.encode(LARGE)
    )


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["block", "file"])
def test_put_get_and_the_chain_form(store, data):
    cid = store.put(data)
    assert cid == cid_for(data) and store.has(cid)
    assert store.get(str(cid)) == data
    assert store.get(cid_from_digest(digest_of(cid))) == data  # the raw-codec CID rebuilt from chain
    assert store.put(data) == cid  # idempotent


def test_large_content_is_blocks_that_bitswap_moves(store):
    cid = store.put(LARGE)
    blocks = unixfs.encode(LARGE)
    assert len(blocks) == 5 and blocks[-1].cid == cid
    assert all(len(b.data) <= unixfs.CHUNK_SIZE for b in blocks)
    assert all(store.has(b.cid) for b in blocks)


def test_missing_and_invalid_cids(store):
    with pytest.raises(ContentNotFoundError):
        store.get(cid_for(b"never stored"))
    assert not store.has(cid_for(b"never stored"))
    with pytest.raises(InvalidCIDError):
        store.get("not-a-cid")
    dag_pb_v0 = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u"
    with pytest.raises(InvalidCIDError, match="CIDv1"):
        parse_cid(dag_pb_v0)


def test_a_file_with_a_missing_leaf_is_not_found(store):
    blocks = unixfs.encode(os.urandom(len(LARGE)))
    for block in blocks[1:]:  # every block but the first leaf
        store._put_block(block.cid, block.data, pin=False)
    with pytest.raises(ContentNotFoundError):
        store.get(blocks[-1].cid)


def test_small_content_that_reads_as_a_file_root_is_refused(store):
    root = unixfs.encode(LARGE)[-1].data
    with pytest.raises(StoreError, match="UnixFS file node"):
        store.put(root)


def test_a_dag_of_other_chunks_is_not_this_content(store):
    """Every block hashes right, but the DAG is not the one the content makes: one encoding only."""
    data = os.urandom(5000)
    blocks = unixfs.encode(data, chunk_size=1024)
    for block in blocks:
        store._put_block(block.cid, block.data, pin=False)
    with pytest.raises(CIDMismatchError, match="is not the DAG its 5000 bytes make: other chunks"):
        store.get(blocks[-1].cid)


def test_a_dag_of_other_links_is_not_this_content(store):
    """The content's own leaves under another tree of nodes: also another encoding."""
    data = os.urandom(3 * unixfs.CHUNK_SIZE + 1000)
    blocks = unixfs.encode(data, max_links=2)
    for block in blocks:
        store._put_block(block.cid, block.data, pin=False)
    assert len(blocks) > len(unixfs.encode(data))  # a deeper tree over the same four leaves
    with pytest.raises(CIDMismatchError, match=f"make: those are {unixfs.cid_of(data)}"):
        store.get(blocks[-1].cid)


def test_dag_pb_cid_of_a_raw_block_is_refused(store):
    cid = store.put(SMALL)
    with pytest.raises(CIDMismatchError):
        store.get(cid.set(codec="dag-pb"))


def test_pin_of_the_chain_form_pins_the_whole_file(ipfs_api_url):
    store = KuboStore(ipfs_api_url, timeout_s=1.0)
    cid = store.put(LARGE, pin=False)
    store.pin(cid_from_digest(digest_of(cid)))
    pins = httpx.post(f"{ipfs_api_url}/api/v0/pin/ls", params={"arg": str(cid)}).json()["Keys"]
    assert [(parse_cid(k), v["Type"]) for k, v in pins.items()] == [(cid, "recursive")]


def test_tampered_bytes_are_refused_and_left_in_place(tmp_path):
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"original")
    store.path_of(cid).write_bytes(b"tampered")
    with pytest.raises(CIDMismatchError, match=str(cid)):
        store.get(cid)
    assert store.path_of(cid).read_bytes() == b"tampered"  # evidence kept, nothing deleted


def test_a_tampered_leaf_is_named(tmp_path):
    store = EmbeddedStore(tmp_path)
    cid = store.put(LARGE)
    leaf = unixfs.encode(LARGE)[1].cid
    store.path_of(leaf).write_bytes(b"tampered")
    with pytest.raises(CIDMismatchError, match=str(leaf)):
        store.get(cid)


def test_a_node_that_returns_other_bytes_is_caught(ipfs_api_url):
    """The node is not trusted with the bytes: a proxy that alters every block it returns."""
    real = httpx.Client()

    def altering(request: httpx.Request) -> httpx.Response:
        answer = real.send(httpx.Request(request.method, request.url, content=request.read(), headers=request.headers))
        if request.url.path.endswith("/block/get"):
            return httpx.Response(answer.status_code, content=b"x" + answer.content)
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    store = KuboStore(ipfs_api_url, client=httpx.Client(transport=httpx.MockTransport(altering)))
    cid = store.put(b"honest bytes")
    with pytest.raises(CIDMismatchError):
        store.get(cid)


def test_an_unreachable_node_is_a_transient_error():
    store = KuboStore("http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.put(b"x")
