"""`fedmarket aggregator ...`: the aggregator's commands."""

from __future__ import annotations

from typing import Annotated

import typer

from fedmarket_cli._common import ADDRESS, CHAIN, KEY, print_json

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    help="The aggregator: run a market by polling, or listen for chain events that trigger the deployments.",
    no_args_is_help=True,
)


@app.command(
    "run",
    help="Run the whole market in this process, polling the chain: open each round, wait for the submissions, run the "
    "round flow, then settle and withdraw the fee. Resumes a market already under way. "
    f"Reads {KEY}, {CHAIN}, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL.",
)
def aggregator_run(market: Annotated[str, typer.Option(**ADDRESS, help="market address")]) -> None:
    from fedmarket.context import current_platform
    from fedmarket_flows.market import market_flow

    reports, settlement = market_flow(market, poll_s=current_platform().settings.poll_interval_s)
    print_json(
        {
            "market": market,
            "rounds": len(reports),
            "final_accuracy": settlement.final_accuracy,
            "settle_tx": settlement.tx_hash,
        }
    )


@app.command(
    "listen",
    help="Follow the factory's markets aggregated by this key and emit one Prefect event per chain event (checkpointed, "
    "each delivered exactly once); the deployment triggers in prefect.yaml turn them into round, advance and settlement "
    f"runs. Reads {KEY}, {CHAIN}, FEDMARKET_FACTORY_ADDRESS, FEDMARKET_STATE_DIR, FEDMARKET_LISTENER_MAX_BLOCKS, "
    "FEDMARKET_LISTENER_CONFIRMATIONS, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL (a Prefect server).",
)
def aggregator_listen(
    market: Annotated[list[str] | None, typer.Option(**ADDRESS, help="also follow this market (repeatable)")] = None,
    follow_all: Annotated[
        bool, typer.Option("--all", help="follow every market of the factory, not only this key's")
    ] = False,
    polls: Annotated[int, typer.Option(min=0, help="stop after this many polls (0: run until stopped)")] = 0,
) -> None:
    from fedmarket_flows.listener import listener_flow

    print_json({"events": listener_flow(markets=market or [], follow_all=follow_all, polls=polls or None)})


@app.command(
    "prune",
    help="Delete the market's persisted round results (the opened updates, sealed at rest in FEDMARKET_RESULTS_DIR, "
    "and Prefect's records of them). The settlement flow does this itself once the market is settled; a market "
    f"under way needs --force, and its next round step opens every update again. Reads {CHAIN}, "
    "FEDMARKET_RESULTS_DIR, FEDMARKET_RESULTS_KEY.",
)
def aggregator_prune(
    market: Annotated[str, typer.Option(**ADDRESS, help="market address")],
    force: Annotated[bool, typer.Option("--force", help="prune a market that is not settled yet")] = False,
) -> None:
    from fedmarket.chain.market import FINAL_PHASES
    from fedmarket.context import current_platform
    from fedmarket.errors import ProtocolError
    from fedmarket_tasks.cache import prune_results

    phase = current_platform().market(market).phase()
    if phase not in FINAL_PHASES and not force:
        raise ProtocolError(f"market {market} is in phase {phase}, not settled: prune it with --force")
    print_json({"market": market, "phase": phase} | prune_results.fn(market))
