"""The parties' commands: each party runs its own process with its own key.

Keys come from FEDMARKET_KEY_FILE (written by `fedmarket keys new`, mode 0600) or
FEDMARKET_ETH_PRIVATE_KEY, never from the command line. Every command reads the FEDMARKET_*
settings; the ones that matter most are named in each command's help.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedmarket.errors import FedMarketError

CHAIN = "FEDMARKET_CHAIN_RPC_URL (node), FEDMARKET_STORE_BACKEND/FEDMARKET_STORE_DIR/FEDMARKET_KUBO_API_URL (store)"
KEY = "FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY (this party's key)"
err = Console(stderr=True)


def _out(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _run(fn, *args, **kwargs):
    """Run a command body; a fedmarket error is one clear line on stderr and exit status 1."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    try:
        return fn(*args, **kwargs)
    except FedMarketError as exc:
        err.print(f"[red]{type(exc).__name__}:[/red] {exc}")
        raise typer.Exit(1) from None


# ---------------------------------------------------------------- keys and data
keys = typer.Typer(help="Key files: one per party, mode 0600.", no_args_is_help=True)


@keys.command("new")
def keys_new(
    out: Annotated[Path, typer.Option(help="key file to create (never overwritten)")],
    role: Annotated[str, typer.Option(help="owner | trainer | aggregator (a label only)")] = "party",
) -> None:
    """Create a fresh Ethereum + X25519 identity in a new key file with mode 0600 and print its
    public half as JSON. Reads no settings."""
    from fedmarket.keys import write_key_file

    party = _run(write_key_file, out, role)
    _out({"address": party.address, "box_public_key": "0x" + party.public_box_key.hex(), "key_file": str(out)})


@keys.command("show", help=f"Print this process's address and X25519 public key (what an owner needs to name an aggregator). Reads {KEY}.")
def keys_show() -> None:
    from fedmarket.keys import own_party
    from fedmarket.settings import load_settings

    party = _run(lambda: own_party(load_settings()))
    if party is None:
        err.print("[red]ConfigError:[/red] no key: set FEDMARKET_KEY_FILE or FEDMARKET_ETH_PRIVATE_KEY")
        raise typer.Exit(1)
    _out({"address": party.address, "box_public_key": "0x" + party.public_box_key.hex()})


data = typer.Typer(help="Datasets as fedmarket stores them (safetensors: features, labels).", no_args_is_help=True)


@data.command("digits")
def data_digits(
    out: Annotated[Path, typer.Option(help="directory for owner.safetensors and trainer-<i>.safetensors")],
    trainers: Annotated[int, typer.Option(min=1, help="number of trainer shares")] = 4,
    split: Annotated[str, typer.Option(help="iid | dirichlet")] = "iid",
    seed: Annotated[int, typer.Option(help="seed of the splits")] = 0,
) -> None:
    """Split scikit-learn's handwritten digits into an owner's validation/test data and one
    private share per trainer, as files. Reads no settings."""
    from fedmarket.ml.data import encode_dataset, load_digits_dataset, owner_split, split_trainers

    if split not in ("iid", "dirichlet"):
        err.print(f"[red]invalid --split:[/red] {split!r}; choose iid or dirichlet")
        raise typer.Exit(2)
    pool, owner_data = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "owner.safetensors").write_bytes(encode_dataset(owner_data))
    paths = []
    for i, share in enumerate(split_trainers(pool, trainers, split=split, alpha=0.5, seed=seed)):
        paths.append(str(out / f"trainer-{i}.safetensors"))
        Path(paths[-1]).write_bytes(encode_dataset(share))
    _out({"owner": str(out / "owner.safetensors"), "trainers": paths})


# ---------------------------------------------------------------- owner
owner = typer.Typer(help="The project owner: create a market with its escrow, follow it, cancel it, withdraw.", no_args_is_help=True)


@owner.command(
    "create",
    help="Publish the task and the owner's data by CID and create a market through the factory with the largest "
    f"possible payout in escrow. Prints {{market, factory, deposit, tx}}. Reads {KEY}, {CHAIN}, "
    "FEDMARKET_FACTORY_ADDRESS (unset: deploys a factory); with --prove-rounds also FEDMARKET_ZK_CACHE_DIR and "
    "FEDMARKET_ZK_SRS_PATH (unset: an SRS from gen_srs, NOT FOR PRODUCTION).",
)
def owner_create(
    data_file: Annotated[Path, typer.Option("--data", help="owner's validation/test data file")],
    aggregator: Annotated[str, typer.Option(help="aggregator's address")],
    aggregator_key: Annotated[str, typer.Option(help="aggregator's X25519 public key, 0x hex (`fedmarket keys show`)")],
    trainers: Annotated[int, typer.Option(min=1, max=128, help="number of trainers L")] = 4,
    rounds: Annotated[int, typer.Option(min=1, help="training rounds T")] = 3,
    model: Annotated[str, typer.Option(help="lr | mlp")] = "lr",
    participation_reward_wei: Annotated[int, typer.Option(min=0, help="R_p per benign round")] = 10**16,
    aggregator_fee_wei: Annotated[int, typer.Option(min=0, help="aggregator's fee")] = 5 * 10**16,
    round_duration_s: Annotated[int, typer.Option(min=1, help="submission window of each round")] = 3600,
    reveal_window_s: Annotated[int, typer.Option(min=1, help="time trainers have to reveal their seeds")] = 3600,
    prove_rounds: Annotated[bool, typer.Option(help="every round proven with EZKL and verified by the market: builds the round circuit for L and the model (setup once per circuit, cached in FEDMARKET_ZK_CACHE_DIR; minutes and gigabytes at full size, see `fedmarket bench zk`) and deploys its verifier")] = False,
    prove_settlement_rows: Annotated[int | None, typer.Option(min=2, help="with --prove-rounds: settlement proven too, on a test chunk of this many rows of the owner's data, the chunk the trainers' split seed picks")] = None,
) -> None:
    from flows.owner import create_market

    _out(_run(create_market, data_file, aggregator, aggregator_key, trainers=trainers, rounds=rounds, model=model,
              participation_reward_wei=participation_reward_wei, aggregator_fee_wei=aggregator_fee_wei,
              round_duration_s=round_duration_s, reveal_window_s=reveal_window_s, prove_rounds=prove_rounds,
              test_rows=prove_settlement_rows))


@owner.command("status", help=f"Print the market's phase, rounds, trainers and what each party is owed, as JSON, from the chain alone. Reads {CHAIN}.")
def owner_status(market: Annotated[str, typer.Option(help="market address")]) -> None:
    from flows.owner import market_status

    _out(_run(market_status, market))


@owner.command("cancel", help=f"Cancel a market still in registration; the deposit becomes withdrawable. Reads {KEY}, {CHAIN}.")
def owner_cancel(market: Annotated[str, typer.Option(help="market address")]) -> None:
    from flows.owner import cancel_market

    _out(_run(cancel_market, market))


@owner.command("withdraw", help=f"Withdraw what the market owes this key (the owner's refund). Reads {KEY}, {CHAIN}.")
def owner_withdraw(market: Annotated[str, typer.Option(help="market address")]) -> None:
    from flows.owner import withdraw_owed

    _out(_run(withdraw_owed, market))


# ---------------------------------------------------------------- trainer
trainer = typer.Typer(help="A trainer: register with private data, then train in every round.", no_args_is_help=True)


@trainer.command(
    "register",
    help=f"Check the local data against the market's task and register with a seed commitment. Reads {KEY}, {CHAIN}, PREFECT_API_URL.",
)
def trainer_register(
    market: Annotated[str, typer.Option(help="market address")],
    data_file: Annotated[Path, typer.Option("--data", help="this trainer's private data file")],
) -> None:
    from flows.trainer import join_flow

    _out({"market": market, "result": _run(join_flow, market, str(data_file))})


@trainer.command(
    "run",
    help="A daemon that follows the market until it ends: registers, reveals the split seed, trains and submits a "
    "sealed update whenever a round opens, and withdraws the payout after settlement. "
    f"Reads {KEY}, {CHAIN}, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL.",
)
def trainer_run(
    market: Annotated[str, typer.Option(help="market address")],
    data_file: Annotated[Path, typer.Option("--data", help="this trainer's private data file")],
) -> None:
    from fedmarket.runtime import current_platform
    from flows.trainer import follow_market

    def follow():
        return follow_market(market, data_file, poll_s=current_platform().settings.poll_interval_s, log=err.print)

    _out({"market": market, "phase": _run(follow)})


# ---------------------------------------------------------------- aggregator
aggregator = typer.Typer(
    help="The aggregator: run a market by polling, or listen for chain events that trigger the deployments.", no_args_is_help=True
)


@aggregator.command(
    "run",
    help="Run the whole market in this process, polling the chain: open each round, wait for the submissions, run the "
    "round flow, then settle and withdraw the fee. Resumes a market already under way. "
    f"Reads {KEY}, {CHAIN}, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL.",
)
def aggregator_run(market: Annotated[str, typer.Option(help="market address")]) -> None:
    from fedmarket.runtime import current_platform
    from flows.market import market_flow

    reports, settlement = _run(lambda: market_flow(market, poll_s=current_platform().settings.poll_interval_s))
    _out({"market": market, "rounds": len(reports), "final_accuracy": settlement.final_accuracy, "settle_tx": settlement.tx_hash})


@aggregator.command(
    "listen",
    help="Follow the factory's markets aggregated by this key and emit one Prefect event per chain event (checkpointed, "
    "each delivered exactly once); the deployment triggers in prefect.yaml turn them into round, advance and settlement "
    f"runs. Reads {KEY}, {CHAIN}, FEDMARKET_FACTORY_ADDRESS, FEDMARKET_STATE_DIR, FEDMARKET_LISTENER_MAX_BLOCKS, "
    "FEDMARKET_LISTENER_CONFIRMATIONS, FEDMARKET_POLL_INTERVAL_S, PREFECT_API_URL (a Prefect server).",
)
def aggregator_listen(
    market: Annotated[list[str] | None, typer.Option(help="also follow this market (repeatable)")] = None,
    follow_all: Annotated[bool, typer.Option("--all", help="follow every market of the factory, not only this key's")] = False,
    polls: Annotated[int, typer.Option(min=0, help="stop after this many polls (0: run until stopped)")] = 0,
) -> None:
    from flows.listener import listener_flow

    delivered = _run(listener_flow, markets=market or [], follow_all=follow_all, polls=polls or None)
    _out({"events": delivered})
