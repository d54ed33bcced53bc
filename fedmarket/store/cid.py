"""Content IDs as fedmarket uses them: CIDv1 with sha2-256, the CID `ipfs add --cid-version=1`
gives (`unixfs`): a raw block up to 256 KiB, the dag-pb root of a UnixFS file above. On chain a
CID is stored as its 32-byte digest and rebuilt with the raw codec; the store reads such a CID as
the file when its block is a file's root, so both forms name the same bytes."""

from __future__ import annotations

import base64

from multiformats import CID, multihash

from fedmarket.errors import InvalidCIDError
from fedmarket.store import unixfs

CODECS = ("raw", "dag-pb")
HASH = unixfs.HASH


def cid_for(data: bytes) -> CID:
    """The CID of `data`."""
    return unixfs.cid_of(data)


def parse_cid(value: str | CID) -> CID:
    """Parse and check that the CID is of the kind fedmarket stores."""
    try:
        cid = value if isinstance(value, CID) else CID.decode(value)
    except Exception as exc:  # multiformats raises several unrelated types
        raise InvalidCIDError(f"not a CID: {value!r} ({exc})") from exc
    if cid.version != 1 or cid.codec.name not in CODECS or cid.hashfun.name != HASH:
        raise InvalidCIDError(f"{cid} is not a CIDv1 with raw or dag-pb codec and sha2-256 hash")
    return cid.set(base="base32")


def digest_of(cid: str | CID) -> bytes:
    """The 32-byte digest recorded on chain for this CID."""
    return bytes(parse_cid(cid).raw_digest)


def cid_from_digest(digest: bytes) -> CID:
    """Rebuild the CID from the digest recorded on chain (raw codec: the store resolves a file)."""
    if len(digest) != 32:
        raise InvalidCIDError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return CID("base32", 1, "raw", multihash.wrap(digest, HASH))


_RAW_PREFIX = bytes(cid_from_digest(bytes(32)))[:-32]  # CIDv1, raw codec, sha2-256 multihash header


def cid_text(digest: bytes) -> str:
    """`str(cid_from_digest(digest))` through the standard library's base32: multiformats checks
    every character of its base32 in Python, which costs more than reading the block it names,
    and every block read and every CID read from chain names one."""
    if len(digest) != 32:
        raise InvalidCIDError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return "b" + base64.b32encode(_RAW_PREFIX + digest).decode("ascii").lower().rstrip("=")


def sha256_digest(cid: CID) -> bytes | None:
    """The 32-byte digest of a sha2-256 CID, read from its multihash without decoding it again
    (as `cid_text`, for every block read); None for any other hash."""
    digest = cid.digest
    return digest[len(unixfs.HASH_HEADER) :] if digest[: len(unixfs.HASH_HEADER)] == unixfs.HASH_HEADER else None
