"""What every command group shares: the consoles, JSON output, option parsing, tables, and the
settings named in the help texts."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from eth_utils import is_address, to_checksum_address
from rich.console import Console
from rich.table import Table

CHAIN = "FEDMARKET_CHAIN_RPC_URL (node), FEDMARKET_STORE_BACKEND/FEDMARKET_STORE_DIR/FEDMARKET_KUBO_API_URL (store)"
KEY = "FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY (this party's key)"
err = Console(stderr=True)
PIPED_WIDTH = 1000  # rich's default for a pipe is 80 columns, which cuts addresses and CIDs in tables


def short_runs(command):
    """For a command whose flows run in this process and end with it (a demo, a bench, a one-off
    step): they send Prefect no heartbeats unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY asks for them.
    Prefect 3.8 sends one every 180 s by default, and at the end of each run joins the thread
    that sends them, which sleeps in whole seconds: each flow call would return up to a second
    after its run ended, which is most of a short flow's time. Heartbeats let Prefect tell a
    crashed run from a live one; the long-running commands (`aggregator run`, `aggregator
    listen`, `trainer run`) and every deployment's runs keep them."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        if any(name in os.environ for name in HEARTBEAT_SETTINGS):
            return command(*args, **kwargs)
        from prefect.settings import temporary_settings

        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            return command(*args, **kwargs)

    return run


HEARTBEAT_SETTINGS = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


def stdout_console() -> Console:
    """The console for stdout: the terminal's width, or wide enough that nothing is cut in a pipe."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


# how trainers train, chosen by the task's owner (demo, owner create, bench data)
BatchSize = Annotated[int | None, typer.Option(help="trainers' batch size (default 16; cnn 8)")]
LearningRate = Annotated[
    float | None, typer.Option(help="trainers' learning rate (default: lr 1.0, mlp 0.3, cnn and module 0.1)")
]
LocalEpochs = Annotated[int | None, typer.Option(help="epochs each trainer trains per round, at least (default 5)")]
MinLocalSteps = Annotated[
    int | None,
    typer.Option(help="SGD steps each trainer takes per round, at least: small shares train more epochs (default 100)"),
]


def print_json(payload: dict) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def problems(exc: Exception) -> str:
    """A validation error on one line: each field and what is wrong with it."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors())


def usage_error(option: str, message: str) -> typer.Exit:
    """A bad option: one line naming it, exit status 2 (raise what this returns)."""
    err.print(f"[red]invalid {option}:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


def read_schema(path: Path | None, option: str = "--schema"):
    """A DataSchema JSON file (None: None); a bad one is a usage error naming its problem."""
    if path is None:
        return None
    from pydantic import ValidationError

    from fedmarket_schemas.market import DataSchema

    try:
        return DataSchema.model_validate_json(Path(path).read_text())
    except (ValidationError, ValueError) as exc:
        raise usage_error(option, f"{path}: {problems(exc)}") from None


def address(value: str) -> str:
    """An option's Ethereum address, checksummed (parser= of typer.Option)."""
    if not isinstance(value, str) or not is_address(value):
        raise typer.BadParameter(f"{value!r} is not an Ethereum address (0x and 40 hex digits)")
    return to_checksum_address(value)


def hex32(value: str) -> str:
    """An option's 32 bytes of 0x-prefixed hex, lowercased."""
    digits = value.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise typer.BadParameter(f"{value!r} is not 32 bytes of 0x-prefixed hex")
    return "0x" + digits.lower()


def choice(*allowed: str):
    def parse(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return parse


ADDRESS = dict(parser=address, metavar="ADDRESS")
HEX32 = dict(parser=hex32, metavar="HEX32")


def model_spec(value: str) -> str:
    from fedmarket_schemas.market import model_choice

    try:
        model_choice(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


MODEL = dict(parser=model_spec, metavar="lr|mlp|cnn|module:PKG.MOD:CLASS")
BUILTIN_MODEL = dict(parser=choice("lr", "mlp", "cnn"), metavar="lr|mlp|cnn")
SPLIT = dict(parser=choice("iid", "dirichlet"), metavar="iid|dirichlet")
AGGREGATION = dict(
    parser=choice("plain", "secure"),
    metavar="plain|secure",
    help="secure: trainers mask their updates (pairwise masks, Bonawitz et al. 2017) so that nobody, the "
    "aggregator included, sees one, only each round's mean; no outlier rule then runs and trainers are paid "
    "by inclusion (README: Secure aggregation)",
)
NORM_BOUND = dict(
    min=1e-6,
    metavar="B",
    help="with --aggregation secure: every trainer proves with EZKL that its update's L2 norm is at most B "
    "(it clips to B); a submission without a valid proof is excluded",
)
# an existing, readable file, not a folder (typer checks it before the command runs)
INPUT_FILE = dict(exists=True, file_okay=True, dir_okay=False, readable=True, resolve_path=True)
# a data file, or a folder with one subfolder of images per label (fedmarket.ml.formats)
DATA = dict(exists=True, file_okay=True, dir_okay=True, readable=True, resolve_path=True)
DATA_HELP = ".csv, .parquet, .npz, .safetensors, or a folder of images per label, read under the task's schema"


def int_list(value: str, option: str, minimum: int = 1) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(v < minimum for v in items):
        raise usage_error(option, f"expected comma-separated integers of at least {minimum}, got {value!r}")
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
    stdout_console().print(table)
