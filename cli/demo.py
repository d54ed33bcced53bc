"""`fedmarket demo`: one whole market on the embedded defaults."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedmarket.errors import FedMarketError
from fedmarket.units import eth
from fedmarket_cli._common import (
    AGGREGATION,
    MODEL,
    NORM_BOUND,
    SPLIT,
    BatchSize,
    LearningRate,
    LocalEpochs,
    MinLocalSteps,
    err,
    problems,
    short_runs,
    stdout_console,
    usage_error,
)


@short_runs
def demo(
    trainers: Annotated[int, typer.Option(help="number of trainers L")] = 8,
    malicious: Annotated[int, typer.Option(help="how many trainers attack (noise, sign flip, scale, ...)")] = 3,
    rounds: Annotated[int, typer.Option(help="training rounds T")] = 5,
    model: Annotated[
        str,
        typer.Option(
            **MODEL,
            help="lr | mlp | cnn | module:package.module:Class (your own torch.nn.Module, built as "
            "Class(in_features, classes), installed where every party runs)",
        ),
    ] = "lr",
    data: Annotated[
        str,
        typer.Option(
            help="the market's data: a .csv, .parquet, .npz or .safetensors file, a folder of images per label, "
            "or a shipped example: digits | breast_cancer | wine (the task's schema is the file's profile)"
        ),
    ] = "digits",
    label_column: Annotated[str, typer.Option(help="with --data FILE: the column holding each row's label")] = "label",
    split: Annotated[str, typer.Option(**SPLIT, help="iid | dirichlet")] = "iid",
    seed: Annotated[int, typer.Option(help="seed of data split, attackers and training")] = 0,
    attack: Annotated[
        str,
        typer.Option(
            metavar="A[,B...]",
            help="attacks the malicious trainers play, round robin: noise, sign_flip, scale, label_flip, alie, "
            "ipm, replay, free_ride, garbage (uploads a sealed update that does not open), bad_shares (with "
            "--aggregation secure: deals shares that do not open, answers no complaint)",
        ),
    ] = "noise,sign_flip,scale",
    prove: Annotated[
        bool, typer.Option("--prove", help="prove every round and the settlement with EZKL, verified on chain")
    ] = False,
    test_rows: Annotated[int, typer.Option(help="with --prove: rows of the test chunk the settlement proves")] = 20,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    local_epochs: LocalEpochs = None,
    min_local_steps: MinLocalSteps = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            metavar="E",
            help="every trainer trains with DP-SGD (Opacus) and spends at most epsilon E (delta 1e-5) over the "
            "whole market; the noise is set so that the smallest share can train every round",
        ),
    ] = None,
    aggregation: Annotated[str, typer.Option(**AGGREGATION)] = "plain",
    norm_bound: Annotated[float | None, typer.Option(**NORM_BOUND)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Run one whole market on the embedded defaults: the owner escrows, trainers (some
    malicious) train and submit sealed updates by CID, the aggregator runs every round and
    settles, and everyone withdraws. With --prove the rounds and the settlement are proven
    (circuits built and set up on first use, cached in FEDMARKET_ZK_CACHE_DIR). Reads the
    FEDMARKET_* settings."""
    from fedmarket_flows.demo import DemoConfig, demo_data, demo_flow
    from fedmarket_schemas.market import DataSchema, TaskSpec, model_choice

    kind, module = model_choice(model)
    try:
        config = DemoConfig(
            trainers=trainers,
            malicious=malicious,
            rounds=rounds,
            model=kind,
            module=module,
            data=data,
            label_column=label_column,
            split=split,
            seed=seed,
            attacks=tuple(a.strip() for a in attack.split(",") if a.strip()),
            prove=prove,
            test_rows=test_rows,
            dp_epsilon=dp_epsilon,
            aggregation=aggregation,
            norm_bound=norm_bound,
            batch_size=batch_size,
            learning_rate=learning_rate,
            local_epochs=local_epochs,
            min_local_steps=min_local_steps,
        )
    except ValueError as exc:
        raise usage_error("options", problems(exc)) from None
    try:  # a file that cannot be read, or a model that cannot read it, is named before Prefect starts
        schema, _ = demo_data(data, label_column)
        TaskSpec.for_data(schema or DataSchema(), kind, module=module)
    except FedMarketError as exc:
        raise usage_error("--data", str(exc)) from None
    except ValueError as exc:
        raise usage_error("--model", problems(exc)) from None

    started = time.perf_counter()
    total = 1 + trainers + rounds + 1 + trainers + 2
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=as_json,
    ) as bar:
        job = bar.add_task("starting Prefect", total=total)

        def progress(kind: str, payload: dict) -> None:
            label = {"round": f"round {payload.get('round')} done"}.get(kind, kind)
            bar.update(job, advance=1, description=label)

        try:
            report = demo_flow(config, progress)
        except FedMarketError as exc:
            err.print(f"[red]market failed:[/red] {exc}")
            raise typer.Exit(1) from None
        bar.update(job, completed=total, description="done")
    elapsed = time.perf_counter() - started

    if as_json:
        out = report.model_dump(mode="json")
        out["wall_s"] = round(elapsed, 2)
        sys.stdout.write(json.dumps(out) + "\n")
        return
    _print_human(report, elapsed)


def _print_human(report, elapsed: float) -> None:
    out = stdout_console()
    out.print(f"market [bold]{report.market}[/bold] on {report.chain}, store: {report.store}")
    if report.aggregation == "secure":
        out.print(
            "secure aggregation: updates masked, only each round's survivors' mean was opened; no outlier rule, "
            "pay by inclusion"
        )
    if report.verifier is None:
        out.print("[yellow]verifier: none - rounds and settlement are NOT proven (no ZK verifier set)[/yellow]")
    else:
        out.print(f"rounds proven, verified by {report.verifier}; settlement by {report.settlement_verifier or 'none'}")
    rounds = Table(title="rounds")
    for col in ("round", "val. accuracy", "flagged", "aggregate CID", "gas", "verifier"):
        rounds.add_column(col)
    attackers = set(report.attackers)
    for r in report.rounds:
        flagged = ", ".join(("*" if t in attackers else "") + t[:10] for t in r.flagged) or "-"
        rounds.add_row(
            str(r.round),
            f"{r.accuracy:.4f}",
            flagged,
            r.aggregate_cid[:20] + "...",
            f"{r.gas_used:,}",
            r.verifier or "none",
        )
    out.print(rounds)
    payouts = Table(title="payouts (* = attacker)")
    for col in ("account", "role", "contribution", "payout (ETH)"):
        payouts.add_column(col)
    for account, wei in report.payouts.items():
        role = "aggregator" if account == report.aggregator else "trainer"
        mark = "*" if account in attackers else ""
        contribution = report.contributions.get(account)
        payouts.add_row(mark + account, role, "-" if contribution is None else f"{contribution:+.4f}", eth(wei))
    payouts.add_row("owner refund", "owner", "", eth(report.refund))
    out.print(payouts)
    out.print(
        f"final test accuracy {report.final_accuracy:.4f}; deposit {eth(report.deposit)} ETH = payouts "
        f"{eth(sum(report.payouts.values()))} + refund {eth(report.refund)}; withdrawn {eth(report.withdrawn_total)} ETH (bonds {eth(report.bonds)} returned); "
        f"contract balance after {report.contract_balance_after} wei; {elapsed:.1f} s"
    )
    out.print("gas: " + ", ".join(f"{k} {v:,}" for k, v in report.gas.items()))
    if report.dp:
        spent = report.dp_epsilon.values()
        out.print(
            f"DP-SGD: noise multiplier {report.dp['noise_multiplier']:.3f}, clipping {report.dp['max_grad_norm']:g}, "
            f"budget epsilon {report.dp['epsilon_budget']:g} (delta {report.dp['delta']:g}); trainers report "
            f"epsilon {min(spent, default=0):.3f} to {max(spent, default=0):.3f} spent"
        )
