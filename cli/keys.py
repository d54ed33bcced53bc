"""`fedmarket keys ...`: key files, one per party, mode 0600."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedmarket_cli._common import KEY, print_json

app = typer.Typer(help="Key files: one per party, mode 0600.", no_args_is_help=True, rich_markup_mode=None)


@app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option(help="key file to create (never overwritten)")],
    role: Annotated[str, typer.Option(help="owner | trainer | aggregator (a label only)")] = "party",
) -> None:
    """Create a fresh Ethereum + X25519 identity in a new key file with mode 0600 and print its
    public half as JSON. Reads no settings."""
    from fedmarket.identity import write_key_file

    party = write_key_file(out, role)
    print_json({"address": party.address, "box_public_key": "0x" + party.public_box_key.hex(), "key_file": str(out)})


@app.command(
    "show",
    help=f"Print this process's address and X25519 public key (what an owner needs to name an aggregator). Reads {KEY}.",
)
def keys_show() -> None:
    from fedmarket.errors import ConfigError
    from fedmarket.identity import own_party
    from fedmarket.settings import load_settings

    if (party := own_party(load_settings())) is None:
        raise ConfigError("no key: set FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY")
    print_json({"address": party.address, "box_public_key": "0x" + party.public_box_key.hex()})
