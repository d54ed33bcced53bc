"""Who a process acts for: a party's Ethereum account and X25519 key, the secrets derived from
them, and key files.

A process's own identity comes from a key file or the environment, never from the command line (a
command line is visible to every user of the machine in `ps` and lands in shell history). A key
file is JSON `{"role", "eth_private_key", "box_private_key"}` written with mode 0600 by `fedmarket
keys new`; like ssh, a file that group or others can read is refused. Without a box key the
X25519 key is derived from the Ethereum key, so one secret is enough to restore a party.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedmarket.crypto import generate_private_key, private_key_bytes, private_key_from_bytes, public_key_bytes
from fedmarket.errors import ConfigError
from fedmarket.settings import Settings


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


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
        return self.derived_secret(b"fedmarket/split-seed/" + bytes.fromhex(market.removeprefix("0x").lower()))

    def derived_secret(self, info: bytes) -> bytes:
        """A 32-byte secret of this party for one purpose (`info`), derived from its account key."""
        return _hkdf(bytes(self.account.key), info)


def derive_box_key(eth_key: bytes) -> bytes:
    return _hkdf(eth_key, b"fedmarket/x25519")


def party_from_secrets(role: str, eth_key_hex: str, box_key_hex: str | None = None) -> Party:
    try:
        account = Account.from_key(eth_key_hex)
        box = bytes.fromhex(box_key_hex.removeprefix("0x")) if box_key_hex else derive_box_key(bytes(account.key))
        return Party(role=role, account=account, box_key=private_key_from_bytes(box))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid {role} key: {type(exc).__name__}") from None  # never echo key material


def read_key_file(path: Path) -> Party:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"key file {path} does not exist")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"key file {path} is readable by group or others: chmod 600 {path}")
    try:
        data = json.loads(path.read_text())
        return party_from_secrets(data.get("role", "party"), data["eth_private_key"], data.get("box_private_key"))
    except (json.JSONDecodeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"key file {path} is not a fedmarket key file: {type(exc).__name__} {exc}") from None


def own_party(settings: Settings) -> Party | None:
    """The party named by FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY, or None."""
    if settings.key_file is not None:
        return read_key_file(settings.key_file)
    if settings.eth_private_key is not None:
        box = settings.box_private_key.get_secret_value() if settings.box_private_key else None
        return party_from_secrets("party", settings.eth_private_key.get_secret_value(), box)
    return None


def write_key_file(path: Path, role: str) -> Party:
    """A fresh identity in a new file with mode 0600; an existing file is never overwritten."""
    path = Path(path)
    account = Account.create()
    box = generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as f:
        json.dump(
            {"role": role, "eth_private_key": account.key.hex(), "box_private_key": private_key_bytes(box).hex()}, f
        )
    return Party(role=role, account=account, box_key=box)
