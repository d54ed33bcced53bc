"""Content store: embedded CID blockstore (default) or an IPFS node (Kubo, js-ipfs), chosen by settings."""

from __future__ import annotations

from fedmarket.settings import Settings
from fedmarket.store.base import ContentStore
from fedmarket.store.cid import cid_for, cid_from_digest, cid_text, digest_of, parse_cid, sha256_digest
from fedmarket.store.embedded import EmbeddedStore
from fedmarket.store.kubo import KuboStore


def open_store(settings: Settings) -> ContentStore:
    if settings.store_backend == "kubo":
        return KuboStore(str(settings.kubo_api_url), timeout_s=settings.kubo_timeout_s)
    return EmbeddedStore(settings.store_dir)


__all__ = [
    "ContentStore",
    "EmbeddedStore",
    "KuboStore",
    "cid_for",
    "cid_from_digest",
    "cid_text",
    "digest_of",
    "open_store",
    "parse_cid",
    "sha256_digest",
]
