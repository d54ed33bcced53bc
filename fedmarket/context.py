"""The platform a piece of code runs against: settings, chain connection, content store, and the
keys of the parties this process acts for. Tasks look parties up by address, so keys never travel
as Prefect parameters, results or UI data.

`current_platform()` is the one set by the innermost `use_platform` block of this context (a
`ContextVar`, as Prefect's own run contexts: Prefect's thread-pool task runner copies the context
into each task's thread), else the process's own, built once from the settings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from fedmarket.chain import Chain, MarketClient
from fedmarket.errors import ConfigError
from fedmarket.identity import Party, own_party
from fedmarket.settings import Settings, load_settings
from fedmarket.store import ContentStore, open_store


@dataclass
class Platform:
    settings: Settings
    chain: Chain
    store: ContentStore
    parties: dict[str, Party] = field(default_factory=dict)
    own: Party | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Platform:
        settings = settings or load_settings()
        platform = cls(settings=settings, chain=Chain.connect(settings), store=open_store(settings))
        if (party := own_party(settings)) is not None:
            platform.own = platform.add(party)
        return platform

    @property
    def me(self) -> Party:
        """The party this process acts for (FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY)."""
        if self.own is None:
            raise ConfigError(
                "this process has no key: set FEDMARKET_KEY_FILE (see `fedmarket keys new`) or FEDMARKET_ETH_PRIVATE_KEY"
            )
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


_in_use: ContextVar[Platform | None] = ContextVar("fedmarket_platform", default=None)
_process_lock = threading.Lock()
_process: Platform | None = None


def current_platform() -> Platform:
    """The platform of the innermost `use_platform` block, else this process's own."""
    global _process
    if (platform := _in_use.get()) is not None:
        return platform
    with _process_lock:
        if _process is None:
            _process = Platform.from_settings()
        return _process


@contextmanager
def use_platform(platform: Platform) -> Iterator[Platform]:
    """Make `platform` the one code in this context sees, for the duration of the block."""
    token = _in_use.set(platform)
    try:
        yield platform
    finally:
        _in_use.reset(token)
