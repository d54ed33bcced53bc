"""`fedmarket` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedmarket.errors import FedMarketError
from flows import cli_roles as roles

app = typer.Typer(
    help="fedmarket: a verifiable data market for federated learning on Ethereum, run by Prefect.\n\n"
    "Settings are environment variables prefixed FEDMARKET_ (see README): FEDMARKET_CHAIN_RPC_URL "
    "selects a node instead of the in-process EVM, FEDMARKET_STORE_BACKEND=kubo and "
    "FEDMARKET_KUBO_API_URL a Kubo node instead of the embedded blockstore.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


@app.callback()
def main() -> None:
    """fedmarket command line."""


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _eth(wei: int) -> str:
    return f"{wei / 10**18:.6f}"


@app.command()
def demo(
    trainers: Annotated[int, typer.Option(help="number of trainers L")] = 8,
    malicious: Annotated[int, typer.Option(help="how many trainers attack (noise, sign flip, scale, ...)")] = 3,
    rounds: Annotated[int, typer.Option(help="training rounds T")] = 5,
    model: Annotated[str, typer.Option(help="lr | mlp")] = "lr",
    split: Annotated[str, typer.Option(help="iid | dirichlet")] = "iid",
    seed: Annotated[int, typer.Option(help="seed of data split, attackers and training")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
) -> None:
    """Run one whole market on the embedded defaults: the owner escrows, trainers (some
    malicious) train and submit sealed updates by CID, the aggregator runs every round and
    settles, and everyone withdraws. Reads the FEDMARKET_* settings."""
    _quiet_prefect()
    from fedmarket.errors import FedMarketError
    from flows.demo import DemoConfig, demo_flow

    try:
        config = DemoConfig(trainers=trainers, malicious=malicious, rounds=rounds, model=model, split=split, seed=seed)
    except ValueError as exc:
        err.print(f"[red]invalid options:[/red] {exc}")
        raise typer.Exit(2) from None

    started = time.perf_counter()
    total = 1 + trainers + rounds + 1 + trainers + 2
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=as_json,
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
    out = Console()
    out.print(f"market [bold]{report.market}[/bold] on {report.chain}, store: {report.store}")
    if report.verifier is None:
        out.print("[yellow]verifier: none - rounds and settlement are NOT proven (no ZK verifier set)[/yellow]")
    rounds = Table(title="rounds")
    for col in ("round", "val. accuracy", "flagged", "aggregate CID", "gas", "verifier"):
        rounds.add_column(col)
    attackers = set(report.attackers)
    for r in report.rounds:
        flagged = ", ".join(("*" if t in attackers else "") + t[:10] for t in r.flagged) or "-"
        rounds.add_row(str(r.round), f"{r.accuracy:.4f}", flagged, r.aggregate_cid[:20] + "...", f"{r.gas_used:,}", r.verifier or "none")
    out.print(rounds)
    payouts = Table(title="payouts (* = attacker)")
    for col in ("account", "role", "contribution", "payout (ETH)"):
        payouts.add_column(col)
    for account, wei in report.payouts.items():
        role = "aggregator" if account == report.aggregator else "trainer"
        mark = "*" if account in attackers else ""
        contribution = report.contributions.get(account)
        payouts.add_row(mark + account, role, "-" if contribution is None else f"{contribution:+.4f}", _eth(wei))
    payouts.add_row("owner refund", "owner", "", _eth(report.refund))
    out.print(payouts)
    out.print(
        f"final test accuracy {report.final_accuracy:.4f}; deposit {_eth(report.deposit)} ETH = payouts "
        f"{_eth(sum(report.payouts.values()))} + refund {_eth(report.refund)}; withdrawn {_eth(report.withdrawn_total)} ETH; "
        f"contract balance after {report.contract_balance_after} wei; {elapsed:.1f} s"
    )
    out.print("gas: " + ", ".join(f"{k} {v:,}" for k, v in report.gas.items()))


bench = typer.Typer(help="Benchmarks: each prints a table, or with --json one object {\"rows\": [...]}.", no_args_is_help=True)
app.add_typer(bench, name="bench")


def _int_list(value: str, option: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(v <= 0 for v in items):
        err.print(f"[red]invalid {option}:[/red] expected comma-separated positive integers, got {value!r}")
        raise typer.Exit(2)
    return items


@bench.command("gas")
def bench_gas(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L (at most 128)")] = "8,32,128",
    params: Annotated[str, typer.Option(help="comma-separated model sizes (parameters, multiples of 10)")] = "650,100000",
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [{op, trainers, params, gas}, ...]}")] = False,
) -> None:
    """Gas per market operation (create, register, reveal, openRound, submit, finalizeRound
    without a verifier, settle, withdraw) and per round in total, for each L and model size, on
    the in-process EVM or the node named by FEDMARKET_CHAIN_RPC_URL. Updates are real: encoded,
    sealed, stored and committed. Reads the FEDMARKET_* settings."""
    from flows.bench_gas import round_gas_spread, run

    sizes, models = _int_list(trainers, "--trainers"), _int_list(params, "--params")
    if max(sizes) > 128:
        err.print("[red]invalid --trainers:[/red] a market holds at most 128 trainers")
        raise typer.Exit(2)
    try:
        rows = run(sizes, models)
    except ValueError as exc:
        err.print(f"[red]invalid options:[/red] {exc}")
        raise typer.Exit(2) from None
    spread = round_gas_spread(rows)
    if as_json:
        payload = {"rows": [r.model_dump(exclude={"target"}) for r in rows], "round_gas_spread": spread}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(title="gas per operation (submit and finalizeRound: worst case; others: mean)")
    for col in ("op", "trainers", "params", "gas", "target", "ok"):
        table.add_column(col, justify="right" if col in ("trainers", "params", "gas", "target") else "left")
    for r in rows:
        ok = {None: "", True: "yes", False: "[red]NO[/red]"}[r.within_target]
        table.add_row(r.op, str(r.trainers), f"{r.params:,}", f"{r.gas:,}", f"{r.target:,}" if r.target else "", ok)
    Console().print(table)
    for n, s in spread.items():
        Console().print(f"L={n}: per-round gas differs by {s:.4%} across model sizes (calldata bytes only)")


def _str_list(value: str, option: str, allowed: list[str]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if not items or unknown:
        err.print(f"[red]invalid {option}:[/red] {', '.join(unknown) or 'empty'}; choose from {', '.join(allowed)}")
        raise typer.Exit(2)
    return items


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _emit(rows: list, as_json: bool, title: str, columns: list[str], extra: dict | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"rows": [r.model_dump() for r in rows], **(extra or {})}) + "\n")
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for r in rows:
        values = r.model_dump()
        table.add_row(*[v if isinstance(v := values[c], str) else _fmt(v, "{:.4g}" if isinstance(v, float) else "{}") for c in columns])
    Console().print(table)


@bench.command("robustness")
def bench_robustness(
    models: Annotated[str, typer.Option(help="comma-separated models: lr, mlp")] = "lr,mlp",
    splits: Annotated[str, typer.Option(help="comma-separated splits: iid, dirichlet (alpha 0.5)")] = "iid,dirichlet",
    attacks: Annotated[str, typer.Option(help="comma-separated attacks (default: none and every registered attack)")] = "",
    detectors: Annotated[str, typer.Option(help="comma-separated defences (default: all)")] = "",
    rounds: Annotated[int, typer.Option(min=1, help="training rounds")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [...]} instead of tables")] = False,
) -> None:
    """sources/004 Table I on digits (Byzantine random models 3 of 8, backdoor scaling 1 of 8, 10
    rounds: cross-round and cross-trainer accuracy) and the final accuracy of every defence under
    every attack, IID and Dirichlet(0.5), with 8 trainers that really train. Reads no settings."""
    from flows.bench_robustness import DEFENCES, TABLE_ONE, all_attacks, run

    chosen_attacks = _str_list(attacks, "--attacks", all_attacks()) if attacks else all_attacks()
    chosen = _str_list(detectors, "--detectors", list(DEFENCES)) if detectors else list(DEFENCES)
    rows = run(_str_list(models, "--models", ["lr", "mlp"]), _str_list(splits, "--splits", ["iid", "dirichlet"]),
               chosen_attacks, chosen, rounds=rounds)
    if as_json:
        _emit(rows, True, "", [])
        return
    table_one = [r for r in rows if r.attack in TABLE_ONE and r.split == "iid" and r.detector == "two_stage"]
    columns = ["model", "attack", "malicious", "cross_round_accuracy", "cross_trainer_accuracy", "final_accuracy"]
    _emit(table_one, False, "Table I (sources/004): the paper's two-stage rule, IID", columns)
    _emit(rows, False, "every defence under every attack (8 trainers)",
          ["model", "split", "attack", "malicious", "detector", "cross_round_accuracy", "cross_trainer_accuracy", "final_accuracy", "honest_kept"])


@bench.command("contribution")
def bench_contribution(
    scenarios: Annotated[str, typer.Option(help="comma-separated: iid, label_disjoint, rare_labels")] = "iid,label_disjoint,rare_labels",
    methods: Annotated[str, typer.Option(help="comma-separated: rloo, loo, shapley, gtg_shapley")] = "rloo,loo,shapley,gtg_shapley",
    rounds: Annotated[int, typer.Option(min=1, help="FedAvg rounds valued")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [...]}")] = False,
) -> None:
    """sources/004's contribution figures on digits with 5 trainers: normalised contributions
    C_i / sum_j C_j by RLOO, leave-one-out, exact Shapley and GTG-Shapley, and the model
    evaluations each used. Reads no settings."""
    from flows.bench_contribution import METHODS, SCENARIOS, run

    rows = run(_str_list(scenarios, "--scenarios", list(SCENARIOS)), _str_list(methods, "--methods", list(METHODS)), rounds=rounds)
    _emit(rows, as_json, "normalised contributions (trainers numbered from 1, as in the paper)",
          ["scenario", "method", "trainer", "contribution", "evaluations"])


@bench.command("zk")
def bench_zk(
    trainers: Annotated[int, typer.Option(help="number of trainers L (round circuit slots)", min=2, max=128)] = 8,
    model: Annotated[str, typer.Option(help="lr or mlp, trained on digits")] = "lr",
    test_rows: Annotated[int, typer.Option(min=2, help="rows of the settlement's test chunk (the paper: 100)")] = 100,
    circuits: Annotated[str, typer.Option(help="comma-separated: round, settlement")] = "round,settlement",
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [{circuit, trainers, model, setup_s, prove_s, ...}, ...]}")] = False,
) -> None:
    """Round and settlement proofs at full size: setup (once per circuit, cached by circuit hash in
    FEDMARKET_ZK_CACHE_DIR; a cached build reports its recorded setup time), witness and prove time,
    peak RSS of setup and proving (each in a child process), proving-key and proof size, gas of
    EZKL's verifier and (round) of a market's whole finalizeRound, on the in-process EVM.
    FEDMARKET_ZK_COLUMNS sets the columns per op (unset: chosen per circuit). SRS: gen_srs
    (NOT FOR PRODUCTION) unless FEDMARKET_ZK_SRS_PATH names a ceremony file."""
    from flows.bench_zk import run_round, run_settlement
    from schemas.market import ModelKind

    (kind,) = _str_list(model, "--model", [k.value for k in ModelKind])
    chosen = _str_list(circuits, "--circuits", ["round", "settlement"])
    rows = []
    if "round" in chosen:
        rows.append(run_round(trainers, ModelKind(kind)))
    if "settlement" in chosen:
        rows.append(run_settlement(trainers, test_rows, ModelKind(kind)))
    _emit(rows, as_json, "proofs (EZKL)", ["circuit", "trainers", "model", "params", "logrows", "columns", "setup_s", "witness_s", "prove_s", "peak_rss_bytes", "pk_bytes", "proof_bytes", "verify_gas", "market_gas", "frac_bits"])


@bench.command("aggregation")
def bench_aggregation(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L")] = "10,50,100",
    params: Annotated[str, typer.Option(help="comma-separated model sizes d")] = "10000,1000000",
    peers: Annotated[bool, typer.Option(help="also time byzfl and flwr (from .venv/peers)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [...], \"summary\": [...]}")] = False,
) -> None:
    """Seconds for our Krum, multi-Krum, median and trimmed mean against byzfl's and Flower's on
    the same float64 inputs (results checked for agreement), the two-stage rule per round after
    the first, and floor.read (one pass reading all updates). Peers run in .venv/peers, made by
    `make setup`. Reads no settings."""
    from flows.bench_aggregation import run, speedups

    try:
        rows = run(_int_list(trainers, "--trainers"), _int_list(params, "--params"), with_peers=peers)
    except FedMarketError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    summary = speedups(rows)
    if as_json:
        _emit(rows, True, "", [], {"summary": summary})
        return
    _emit(rows, False, "seconds per call (best of 3 below 2 s)", ["impl", "op", "trainers", "params", "seconds", "agrees"])
    table = Table(title="ours against the fastest peer, and against floor.read")
    for col in ("op", "trainers", "params", "ours_s", "fastest_peer", "speedup", "over_floor"):
        table.add_column(col)
    for s in summary:
        table.add_row(s["op"], str(s["trainers"]), f"{s['params']:,}", f"{s['ours_s']:.4g}", s["fastest_peer"] or "-",
                      _fmt(s["speedup"], "{:.1f}x"), f"{s['over_floor']:.1f}x")
    Console().print(table)


zk = typer.Typer(help="The EZKL build cache (FEDMARKET_ZK_CACHE_DIR): one build per circuit hash, each with its proving key.", no_args_is_help=True)
app.add_typer(zk, name="zk")


def _builds_out(builds: list, as_json: bool, title: str) -> None:
    if as_json:
        _emit(builds, True, "", [])
        return
    table = Table(title=title)
    for col in ("build", "GB", "proving key GB", "last used (UTC)", "complete"):
        table.add_column(col)
    for b in builds:
        used = time.strftime("%Y-%m-%d %H:%M", time.gmtime(b.last_used))
        key = f"{b.pk_bytes / 1e9:.2f}" if b.pk_bytes else "pruned" if b.complete else "-"
        table.add_row(b.name, f"{b.bytes / 1e9:.2f}", key, used, "yes" if b.complete else "no (setup died or running)")
    Console().print(table)


@zk.command("cache")
def zk_cache(as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [{name, bytes, pk_bytes, last_used, complete}]}")] = False) -> None:
    """List the circuit builds, least recently used first, with their size on disk. Reads
    FEDMARKET_ZK_CACHE_DIR."""
    from fedmarket.settings import load_settings
    from fedmarket.zk.cache import cached_builds

    builds = cached_builds(load_settings().zk_cache_dir)
    _builds_out(builds, as_json, f"{len(builds)} builds, {sum(b.bytes for b in builds) / 1e9:.2f} GB")


@zk.command("prune")
def zk_prune(
    unused_days: Annotated[float, typer.Option(min=0, help="prune builds no prover has used for this many days")] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go, remove nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"rows\": [...]} of the builds pruned, as they were")] = False,
) -> None:
    """Remove the proving keys of circuit builds unused for --unused-days (the rest of a build,
    1 to 4 MB at full size, stays), and setups that died part way. The next proof of a pruned
    circuit sets it up again from what stayed, with the same verifying key, so markets whose
    verifiers were deployed for it go on. Reads FEDMARKET_ZK_CACHE_DIR."""
    from fedmarket.settings import load_settings
    from fedmarket.zk.cache import prune

    removed = prune(load_settings().zk_cache_dir, unused_days, dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    _builds_out(removed, as_json, f"{verb} {sum(b.prunable_bytes for b in removed) / 1e9:.2f} GB from {len(removed)} builds")


for _name, _group in (("keys", roles.keys), ("data", roles.data), ("owner", roles.owner),
                      ("trainer", roles.trainer), ("aggregator", roles.aggregator)):
    app.add_typer(_group, name=_name)


if __name__ == "__main__":
    app()
