"""The process's platform: settings, chain connection, content store, and the keys of the parties
this process acts for. Tasks look it up by address, so keys never travel as Prefect parameters,
results or UI data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.signers.local import LocalAccount

from fedmarket.chain import Chain, MarketClient
from fedmarket.crypto import public_key_bytes
from fedmarket.errors import ConfigError
from fedmarket.settings import Settings, load_settings
from fedmarket.store import ContentStore, open_store


@dataclass(frozen=True)
class Party:
    """One identity: an Ethereum account (pays gas, receives payouts) and an X25519 key."""

    role: str
    account: LocalAccount
    box_key: X25519PrivateKey

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def public_box_key(self) -> bytes:
        return public_key_bytes(self.box_key)

    def split_seed(self, market: str) -> bytes:
        """This trainer's secret seed for `market`'s validation/test split: derived from its
        account key (so a restarted trainer can still reveal it) and unguessable by others."""
        info = b"fedmarket/split-seed/" + bytes.fromhex(market.removeprefix("0x").lower())
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(bytes(self.account.key))


def enrol(market: MarketClient, trainers: list[Party], summary_cid: str) -> None:
    """Every trainer registers (committing to its split seed), then every trainer reveals: the
    commit-reveal order, so no seed is known before all are committed. For simulations, tests
    and benchmarks that play every trainer in one process."""
    for t in trainers:
        market.register(t.account, t.public_box_key, t.split_seed(market.address), summary_cid)
    for t in trainers:
        market.reveal(t.account, t.split_seed(market.address))


@dataclass
class Platform:
    settings: Settings
    chain: Chain
    store: ContentStore
    parties: dict[str, Party] = field(default_factory=dict)
    own: Party | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Platform:
        from fedmarket.keys import own_party  # keys builds Party objects: imported late, no cycle

        settings = settings or load_settings()
        platform = cls(settings=settings, chain=Chain.connect(settings), store=open_store(settings))
        if (party := own_party(settings)) is not None:
            platform.own = platform.add(party)
        return platform

    @property
    def me(self) -> Party:
        """The party this process acts for (FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY)."""
        if self.own is None:
            raise ConfigError("this process has no key: set FEDMARKET_KEY_FILE (see `fedmarket keys new`) or FEDMARKET_ETH_PRIVATE_KEY")
        return self.own

    def add(self, party: Party) -> Party:
        self.parties[party.address] = party
        return party

    def party(self, address: str) -> Party:
        try:
            return self.parties[address]
        except KeyError:
            raise ConfigError(f"this process holds no key for {address}") from None

    def market(self, address: str) -> MarketClient:
        return MarketClient(self.chain, address)


_lock = threading.Lock()
_current: Platform | None = None


def current_platform() -> Platform:
    global _current
    with _lock:
        if _current is None:
            _current = Platform.from_settings()
        return _current


@contextmanager
def use_platform(platform: Platform) -> Iterator[Platform]:
    """Make `platform` the one tasks see, for the duration of the block."""
    global _current
    with _lock:
        previous, _current = _current, platform
    try:
        yield platform
    finally:
        with _lock:
            _current = previous
