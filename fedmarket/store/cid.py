"""Content IDs as fedmarket uses them: CIDv1, raw codec, sha2-256 (what Kubo produces for a
single raw block). On chain a CID is stored as its 32-byte sha2-256 digest; the full CID is
rebuilt from it because codec and hash function are fixed."""

from __future__ import annotations

from multiformats import CID, multihash

from fedmarket.errors import CIDMismatchError, InvalidCIDError

CODEC = "raw"
HASH = "sha2-256"


def cid_for(data: bytes) -> CID:
    """The CID of `data`."""
    return CID("base32", 1, CODEC, multihash.digest(data, HASH))


def parse_cid(value: str | CID) -> CID:
    """Parse and check that the CID is of the kind fedmarket stores."""
    try:
        cid = value if isinstance(value, CID) else CID.decode(value)
    except Exception as exc:  # multiformats raises several unrelated types
        raise InvalidCIDError(f"not a CID: {value!r} ({exc})") from exc
    if cid.version != 1 or cid.codec.name != CODEC or cid.hashfun.name != HASH:
        raise InvalidCIDError(f"{cid} is not a CIDv1 with raw codec and sha2-256 hash")
    return cid


def digest_of(cid: str | CID) -> bytes:
    """The 32-byte digest recorded on chain for this CID."""
    return bytes(parse_cid(cid).raw_digest)


def cid_from_digest(digest: bytes) -> CID:
    """Rebuild the CID from the digest recorded on chain."""
    if len(digest) != 32:
        raise InvalidCIDError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return CID("base32", 1, CODEC, multihash.wrap(digest, HASH))


def verify(cid: str | CID, data: bytes) -> None:
    """Raise CIDMismatchError unless `data` hashes to `cid`."""
    expected = parse_cid(cid)
    actual = cid_for(data)
    if actual != expected:
        raise CIDMismatchError(f"content does not match its CID: expected {expected}, bytes hash to {actual}")
