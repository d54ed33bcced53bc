"""`fedmarket trainer ...`: a trainer's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedmarket_cli._common import ADDRESS, CHAIN, DATA, DATA_HELP, KEY, err, print_json, short_runs

app = typer.Typer(
    help="A trainer: register with private data, then train in every round.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command(
    "register",
    help=f"Check the local data against the market's task and register with a seed commitment. Reads {KEY}, {CHAIN}, PREFECT_API_URL.",
)
@short_runs
def trainer_register(
    market: Annotated[str, typer.Option(**ADDRESS, help="market address")],
    data_file: Annotated[Path, typer.Option("--data", **DATA, help=f"this trainer's private data: {DATA_HELP}")],
) -> None:
    from fedmarket_flows.trainer import join_flow

    print_json({"market": market, "result": join_flow(market, str(data_file))})


@app.command(
    "run",
    help="A daemon that follows the market until it ends: registers, reveals the split seed, trains and submits a "
    "sealed update whenever a round opens, and withdraws the payout after settlement. "
    f"Reads {KEY}, {CHAIN}, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL.",
)
def trainer_run(
    market: Annotated[str, typer.Option(**ADDRESS, help="market address")],
    data_file: Annotated[Path, typer.Option("--data", **DATA, help=f"this trainer's private data: {DATA_HELP}")],
) -> None:
    from fedmarket.context import current_platform
    from fedmarket_flows.trainer import follow_market

    phase = follow_market(market, data_file, poll_s=current_platform().settings.poll_interval_s, log=err.print)
    print_json({"market": market, "phase": phase})
