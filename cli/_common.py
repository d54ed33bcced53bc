"""What every command group shares: the consoles, JSON output, option parsing, tables, and the
settings named in the help texts."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

CHAIN = "FEDMARKET_CHAIN_RPC_URL (node), FEDMARKET_STORE_BACKEND/FEDMARKET_STORE_DIR/FEDMARKET_KUBO_API_URL (store)"
KEY = "FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY (this party's key)"
err = Console(stderr=True)


def print_json(payload: dict) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def usage_error(option: str, message: str) -> typer.Exit:
    """A bad option: one line naming it, exit status 2 (raise what this returns)."""
    err.print(f"[red]invalid {option}:[/red] {message}")
    return typer.Exit(2)


def eth(wei: int) -> str:
    return f"{wei / 10**18:.6f}"


def int_list(value: str, option: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(v <= 0 for v in items):
        raise usage_error(option, f"expected comma-separated positive integers, got {value!r}")
    return items


def str_list(value: str, option: str, allowed: list[str]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if not items or unknown:
        raise usage_error(option, f"{', '.join(unknown) or 'empty'}; choose from {', '.join(allowed)}")
    return items


def fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def emit(rows: list, as_json: bool, title: str, columns: list[str], extra: dict | None = None) -> None:
    """Rows (pydantic models) as {"rows": [...]} on stdout, or as a table."""
    if as_json:
        sys.stdout.write(json.dumps({"rows": [r.model_dump() for r in rows], **(extra or {})}) + "\n")
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for r in rows:
        values = r.model_dump()
        table.add_row(
            *[
                v if isinstance(v := values[c], str) else fmt(v, "{:.4g}" if isinstance(v, float) else "{}")
                for c in columns
            ]
        )
    Console().print(table)
