"""Content as IPFS blocks: one raw block up to a chunk, a UnixFS file above it.

A file is raw leaves of `CHUNK_SIZE` bytes under dag-pb nodes of at most `MAX_LINKS` links,
balanced: the DAG that `ipfs add --cid-version=1` builds with Kubo's and js-ipfs's defaults, so
its root CID is the one any IPFS node computes for the same bytes, and no block is larger than
bitswap moves between peers. Reading walks the DAG block by block, each checked against its CID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import ipld_dag_pb as dag_pb
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from multiformats import CID, multihash

from fedmarket.errors import CIDMismatchError

CHUNK_SIZE = 262_144  # Kubo's and js-ipfs's default chunker, `size-262144`
MAX_LINKS = 174  # their default links per node (balanced layout)
HASH = "sha2-256"
_FILE = 2  # UnixFS Data.DataType.File
HASH_HEADER = multihash.wrap(bytes(32), HASH)[:-32]  # a sha2-256 multihash's code and length


@dataclass(frozen=True)
class Block:
    cid: CID
    data: bytes


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, HASH))


def encode(data: bytes, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> list[Block]:
    """The blocks that hold `data`, the root last."""
    if len(data) <= chunk_size:
        return [Block(raw_cid(data), data)]
    blocks: list[Block] = []
    for start in range(0, len(data), chunk_size):
        blocks.append(Block(raw_cid(data[start : start + chunk_size]), data[start : start + chunk_size]))
    return blocks + _nodes([(b.cid, len(b.data)) for b in blocks], max_links)


def _nodes(leaves: list[tuple[CID, int]], max_links: int) -> list[Block]:
    """The dag-pb nodes of the balanced layout over `leaves` (CID, bytes), the root last."""
    blocks: list[Block] = []
    level = [(cid, size, size) for cid, size in leaves]  # (cid, file bytes under it, Tsize: block bytes under it)
    while len(level) > 1:
        parents = []
        for start in range(0, len(level), max_links):
            children = tuple(level[start : start + max_links])
            node = _node_bytes(children)
            cid = CID("base32", 1, "dag-pb", multihash.digest(node, HASH))
            blocks.append(Block(cid, node))
            parents.append((cid, sum(c[1] for c in children), len(node) + sum(c[2] for c in children)))
        level = parents
    return blocks


def cid_of(data: bytes) -> CID:
    return encode(data)[-1].cid


def file_links(block: bytes) -> list[tuple[CID, int]] | None:
    """(child CID, its file size) for each link when `block` is a UnixFS file node, else None."""
    try:
        node = dag_pb.decode(block)
    except Exception:  # noqa: BLE001 - ipld_dag_pb raises bare Exception among others on bad input
        return None
    if node.data is None or not node.links:
        return None
    meta = _unixfs()()
    try:
        meta.ParseFromString(bytes(node.data))
    except DecodeError:
        return None
    if meta.Type != _FILE or meta.HasField("Data") or len(meta.blocksizes) != len(node.links):
        return None
    if sum(meta.blocksizes) != meta.filesize:
        return None
    return [(link.hash.set(base="base32"), size) for link, size in zip(node.links, meta.blocksizes, strict=True)]


def assemble(cid: CID, fetch: Callable[[CID], bytes]) -> bytes:
    """The content under `cid`, fetching each block through `fetch` and checking it against its
    CID, and the DAG against the one `encode` makes of that content (one encoding per content:
    the same bytes never come back under two CIDs). The leaves were hashed on the way, so only
    the few nodes above them are encoded again. A raw-codec CID names a file when its block is a
    file node: on chain a CID is only its digest, and `ContentStore.put` refuses a small content
    that would read as one."""
    leaves: list[tuple[CID, int]] = []
    data = b"".join(_pieces(cid, fetch, top=True, leaves=leaves))
    chunks = [(start, min(start + CHUNK_SIZE, len(data))) for start in range(0, len(data), CHUNK_SIZE)] or [(0, 0)]
    if [size for _, size in leaves] != [end - start for start, end in chunks] or any(
        leaf.codec.name != "raw" for leaf, _ in leaves
    ):
        raise CIDMismatchError(f"{cid} is not the DAG its {len(data)} bytes make: other chunks")
    root = leaves[0][0] if len(leaves) == 1 else _nodes(leaves, MAX_LINKS)[-1].cid
    if root.digest != cid.digest:
        raise CIDMismatchError(f"{cid} is not the DAG its {len(data)} bytes make: those are {root}")
    return data


def _pieces(cid: CID, fetch: Callable[[CID], bytes], *, top: bool, leaves: list[tuple[CID, int]]) -> Iterator[bytes]:
    block = fetch(cid)
    if HASH_HEADER + hashlib.sha256(block).digest() != cid.digest:  # multihash.digest, without re-validating
        raise CIDMismatchError(f"block does not match its CID: expected {cid}, got {raw_cid(block)}")
    links = file_links(block) if cid.codec.name == "dag-pb" or top else None
    if links is None:
        if cid.codec.name == "dag-pb":
            raise CIDMismatchError(f"{cid} is not a UnixFS file node")
        leaves.append((cid, len(block)))
        yield block
        return
    for child, size in links:
        got = 0
        for piece in _pieces(child, fetch, top=False, leaves=leaves):
            got += len(piece)
            yield piece
        if got != size:
            raise CIDMismatchError(f"{child} holds {got} bytes, its parent {cid} says {size}")


def _node_bytes(children: tuple[tuple[CID, int, int], ...]) -> bytes:
    meta = _unixfs()(Type=_FILE, filesize=sum(c[1] for c in children), blocksizes=[c[1] for c in children])
    links = [dag_pb.PBLink(cid, "", tsize) for cid, _, tsize in children]
    return bytes(dag_pb.encode(dag_pb.PBNode(meta.SerializeToString(), links)))


@cache
def _unixfs():
    """UnixFS's `Data` message (proto2, github.com/ipfs/specs UNIXFS.md), the fields a file uses;
    declared here because no maintained Python package ships the UnixFS schema."""
    proto = descriptor_pb2.FileDescriptorProto(name="fedmarket_unixfs.proto", package="fedmarket.unixfs")
    message = proto.message_type.add(name="Data")
    optional, repeated = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    types = descriptor_pb2.FieldDescriptorProto
    for name, number, label, kind in (
        ("Type", 1, optional, types.TYPE_INT32),
        ("Data", 2, optional, types.TYPE_BYTES),
        ("filesize", 3, optional, types.TYPE_UINT64),
        ("blocksizes", 4, repeated, types.TYPE_UINT64),
    ):
        message.field.add(name=name, number=number, label=label, type=kind)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fedmarket.unixfs.Data"))
