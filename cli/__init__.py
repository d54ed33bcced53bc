"""The `fedmarket` command line: one module per command group (as Prefect's cli/), assembled here.

Every fedmarket error a command raises is one line on stderr and exit status 1; a bad option is
one line naming it and exit status 2. Command bodies import what they run when they run, so
`--help` and a mistyped option answer without loading torch, Prefect and web3.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

from fedmarket.errors import FedMarketError
from fedmarket_cli import aggregator, bench, data, demo, keys, owner, trainer, zk
from fedmarket_cli._common import err


class _Commands(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FedMarketError as exc:
            err.print(f"[red]{type(exc).__name__}:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    help="fedmarket: a verifiable data market for federated learning on Ethereum, run by Prefect.\n\n"
    "Settings are environment variables prefixed FEDMARKET_ (see README): FEDMARKET_CHAIN_RPC_URL "
    "selects a node instead of the in-process EVM, FEDMARKET_STORE_BACKEND=kubo and "
    "FEDMARKET_KUBO_API_URL a Kubo node instead of the embedded blockstore.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _quiet_prefect() -> None:
    """fedmarket command line."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


app.command("demo")(demo.demo)
for _name, _group in (
    ("bench", bench),
    ("zk", zk),
    ("keys", keys),
    ("data", data),
    ("owner", owner),
    ("trainer", trainer),
    ("aggregator", aggregator),
):
    app.add_typer(_group.app, name=_name)


def main() -> None:
    app()
