"""`fedmarket audit MARKET`: re-check a market from the chain and the store alone."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fedmarket_cli._common import address, print_json, stdout_console

STYLE = {"pass": "green", "fail": "bold red", "trusted": "yellow"}


def audit(
    market: Annotated[str, typer.Argument(parser=address, metavar="MARKET", help="market address")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Re-check MARKET with only a node and a store: the ledger rebuilt from events against the
    contract, funds and eq. (5) payouts, every CID, the chain of models, and every proof
    re-verified with instances rebuilt from the chain. Exit status 1 on any failed check.
    Reads the FEDMARKET_* settings (chain node, store)."""
    from fedmarket.audit import audit_market
    from fedmarket.context import current_platform

    platform = current_platform()
    report = audit_market(platform.market(market), platform.store)
    if as_json:
        print_json(report.model_dump() | {"passed": report.passed})
    else:
        table = Table(title=f"audit of {report.market} ({report.phase})")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        for check in report.checks:
            table.add_row(check.name, f"[{STYLE[check.status]}]{check.status}[/]", check.detail)
        stdout_console().print(table)
    if not report.passed:
        raise typer.Exit(1)
