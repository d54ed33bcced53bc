"""`fedmarket bench ...`: each benchmark prints a table, or with --json one object {"rows": [...]}."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from fedmarket_cli._common import (
    BUILTIN_MODEL,
    BatchSize,
    LearningRate,
    MinLocalSteps,
    emit,
    fmt,
    int_list,
    problems,
    short_runs,
    stdout_console,
    str_list,
    usage_error,
)

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    help='Benchmarks: each prints a table, or with --json one object {"rows": [...]}.',
    no_args_is_help=True,
)


@app.command("gas")
def bench_gas(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L (at most 128)")] = "8,32,128",
    params: Annotated[
        str, typer.Option(help="comma-separated model sizes (parameters, multiples of 10)")
    ] = "650,100000",
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [{op, trainers, params, gas}, ...]}')] = False,
) -> None:
    """Gas per market operation (create, register, reveal, openRound, submit, finalizeRound
    without a verifier, settle, withdraw) and per round in total, for each L and model size, on
    the in-process EVM or the node named by FEDMARKET_CHAIN_RPC_URL. Updates are real: encoded,
    sealed, stored and committed. Reads the FEDMARKET_* settings."""
    from fedmarket_benchmarks.gas import round_gas_spread, run

    sizes, models = int_list(trainers, "--trainers"), int_list(params, "--params")
    if max(sizes) > 128:
        raise usage_error("--trainers", "a market holds at most 128 trainers")
    try:
        rows = run(sizes, models)
    except ValueError as exc:
        raise usage_error("options", problems(exc)) from None
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
    stdout_console().print(table)
    for n, s in spread.items():
        stdout_console().print(f"L={n}: per-round gas differs by {s:.4%} across model sizes (calldata bytes only)")


@app.command("robustness")
def bench_robustness(
    models: Annotated[str, typer.Option(help="comma-separated models: lr, mlp")] = "lr,mlp",
    splits: Annotated[str, typer.Option(help="comma-separated splits: iid, dirichlet (alpha 0.5)")] = "iid,dirichlet",
    attacks: Annotated[
        str, typer.Option(help="comma-separated attacks (default: none and every registered attack)")
    ] = "",
    detectors: Annotated[str, typer.Option(help="comma-separated defences (default: all)")] = "",
    rounds: Annotated[int, typer.Option(min=1, help="training rounds")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]} instead of tables')] = False,
) -> None:
    """sources/004 Table I on digits (Byzantine random models 3 of 8, backdoor scaling 1 of 8, 10
    rounds: cross-round and cross-trainer accuracy) and the final accuracy of every defence under
    every attack, IID and Dirichlet(0.5), with 8 trainers that really train. Reads no settings."""
    from fedmarket_benchmarks.robustness import DEFENCES, TABLE_ONE, all_attacks, run

    chosen_attacks = str_list(attacks, "--attacks", all_attacks()) if attacks else all_attacks()
    chosen = str_list(detectors, "--detectors", list(DEFENCES)) if detectors else list(DEFENCES)
    rows = run(
        str_list(models, "--models", ["lr", "mlp"]),
        str_list(splits, "--splits", ["iid", "dirichlet"]),
        chosen_attacks,
        chosen,
        rounds=rounds,
    )
    if as_json:
        emit(rows, True, "", [])
        return
    table_one = [r for r in rows if r.attack in TABLE_ONE and r.split == "iid" and r.detector == "two_stage"]
    columns = ["model", "attack", "malicious", "cross_round_accuracy", "cross_trainer_accuracy", "final_accuracy"]
    emit(table_one, False, "Table I (sources/004): the paper's two-stage rule, IID", columns)
    emit(
        rows,
        False,
        "every defence under every attack (8 trainers)",
        [
            "model",
            "split",
            "attack",
            "malicious",
            "detector",
            "cross_round_accuracy",
            "cross_trainer_accuracy",
            "final_accuracy",
            "honest_kept",
        ],
    )


@app.command("contribution")
def bench_contribution(
    scenarios: Annotated[
        str, typer.Option(help="comma-separated: iid, label_disjoint, rare_labels, duplicated, noisy_labels")
    ] = "iid,label_disjoint,rare_labels,duplicated,noisy_labels",
    methods: Annotated[
        str,
        typer.Option(help="comma-separated: update_loo (the default), update_shapley, rloo, loo, shapley, gtg_shapley"),
    ] = "update_loo,update_shapley,rloo,loo,shapley,gtg_shapley",
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers")] = "5,8",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds (data split and training)")] = "0,1,2",
    rounds: Annotated[int, typer.Option(min=1, help="FedAvg rounds valued")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...], "fairness": [...]}')] = False,
) -> None:
    """How fairly each contribution measure pays on digits: every trainer's normalised
    contribution C_i / sum_j C_j per scenario, size, seed and method (with its standard error and
    the model evaluations it used), and per scenario and method the spread among trainers with
    the same kind of data (cv_equal) and the scenario's fairness check against its target.
    Reads no settings."""
    from fedmarket_benchmarks.contribution import METHODS, SCENARIOS, run

    rows, fairness = run(
        str_list(scenarios, "--scenarios", list(SCENARIOS)),
        str_list(methods, "--methods", list(METHODS)),
        trainers=tuple(int_list(trainers, "--trainers")),
        rounds=rounds,
        seeds=tuple(int_list(seeds, "--seeds", minimum=0)),
    )
    if as_json:
        emit(rows, True, "", [], {"fairness": [f.model_dump() for f in fairness]})
        return
    emit(
        rows,
        False,
        "normalised contributions (trainers numbered from 1, as in the paper)",
        ["scenario", "trainers", "seed", "method", "trainer", "contribution", "std_error", "evaluations"],
    )
    emit(
        fairness,
        False,
        "fairness (worst seed; targets: fedmarket/benchmarks/contribution.py)",
        ["scenario", "trainers", "method", "seeds", "cv_equal", "check", "meets"],
    )


@app.command("zk")
def bench_zk(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L (2 to 128), e.g. 8,16,32")] = "8",
    model: Annotated[str, typer.Option(help="lr or mlp, trained on digits")] = "lr",
    test_rows: Annotated[
        int, typer.Option(min=2, help="rows of each settlement proof's test chunk, one chunk per round")
    ] = 100,
    rounds: Annotated[int, typer.Option(min=1, help="settlement: the market's rounds, one proof each")] = 1,
    circuits: Annotated[str, typer.Option(help="comma-separated: round, settlement")] = "round,settlement",
    commitment: Annotated[
        str | None,
        typer.Option(
            help="comma-separated: how the round circuit binds its inputs, polycommit (markets that prove "
            "their rounds only) or poseidon (markets that prove their settlement too); unset: polycommit, "
            "poseidon with --chunks (the split adapter takes hashed chunks: polycommit chunks only with --layout)"
        ),
    ] = None,
    chunks: Annotated[
        int,
        typer.Option(
            min=1,
            help="round: prove it in this many parameter chunks, a chunk proof each and a rule proof over them "
            "(rows round-chunk and round-rule); 1: one proof",
        ),
    ] = 1,
    settlement_parts: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,  # EzklSettlementVerifier.MAX_PARTS
            help="settlement: prove each round's test chunk in this many proofs of equal rows (--test-rows a "
            "multiple of it; `fedmarket owner create --settlement-parts`); 1: one proof",
        ),
    ] = 1,
    layout: Annotated[
        bool,
        typer.Option(
            "--layout",
            help="only lay the circuits out (EZKL's settings): rows, hash_rows, arith_rows and columns, with no "
            "setup or proof, for sizes past this machine's memory",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"rows": [{circuit, trainers, model, setup_s, prove_s, ...}, ...]}')
    ] = False,
) -> None:
    """Round and settlement proofs at full size: setup (once per circuit, cached by circuit hash in
    FEDMARKET_ZK_CACHE_DIR; a cached build reports its recorded setup time), witness and prove time,
    peak RSS of setup and proving (each in a child process), proving-key and proof size, gas of
    EZKL's verifier and (round) of a market's whole finalizeRound, on the in-process EVM; and
    where the rows go: the domain (2^logrows), the rows hashing inputs and those of arithmetic,
    and how inputs are committed (poseidon or polycommit).
    FEDMARKET_ZK_COLUMNS sets the columns per op (unset: chosen per circuit). SRS: gen_srs
    (NOT FOR PRODUCTION) unless FEDMARKET_ZK_SRS_PATH names a ceremony file."""
    from fedmarket.algorithms.outliers.proven import chunk_size
    from fedmarket.ml.models import parameter_count
    from fedmarket_benchmarks.zk import (
        layout_round,
        layout_settlement,
        layout_split_round,
        run_round,
        run_settlement,
        run_split_round,
    )
    from fedmarket_schemas.market import ModelConfig, ModelKind

    (kind,) = str_list(model, "--model", ["lr", "mlp"])  # the settlement circuit scores these
    chosen = str_list(circuits, "--circuits", ["round", "settlement"])
    sizes = int_list(trainers, "--trainers", minimum=2)
    if max(sizes) > 128:
        raise usage_error("--trainers", "a market holds at most 128 trainers")
    default = "poseidon" if chunks > 1 else "polycommit"
    commitments = str_list(commitment or default, "--commitment", ["polycommit", "poseidon"])
    if chunks > 1 and not layout and "polycommit" in commitments:
        raise usage_error(
            "--commitment",
            "a split round runs in a market, whose adapter takes hashed chunks: polycommit chunks only with --layout",
        )
    round_row, settlement_row = (layout_round, layout_settlement) if layout else (run_round, run_settlement)
    split_rows = layout_split_round if layout else run_split_round
    if chunks > 1:
        try:
            chunk_size(parameter_count(ModelConfig(kind=ModelKind(kind))), chunks)
        except ValueError as exc:
            raise usage_error("--chunks", str(exc)) from None
    if test_rows % settlement_parts:
        raise usage_error("--settlement-parts", f"splits --test-rows {test_rows} into equal parts: a divisor of it")
    rows = []
    for size in sizes:
        if "round" in chosen and chunks > 1:
            for c in commitments:
                more = {"commitment": c} if layout else {}
                rows.extend(split_rows(size, ModelKind(kind), chunks, **more))
        elif "round" in chosen:
            rows.extend(round_row(size, ModelKind(kind), commitment=c) for c in commitments)
        if "settlement" in chosen:
            more = {"parts": settlement_parts} | ({} if layout else {"rounds": rounds})
            rows.append(settlement_row(size, test_rows, ModelKind(kind), **more))
    emit(
        rows,
        as_json,
        "proofs (EZKL)",
        [
            "circuit",
            "trainers",
            "model",
            "params",
            "commitment",
            "rows",
            "hash_rows",
            "arith_rows",
            "columns",
            "setup_s",
            "witness_s",
            "prove_s",
            "peak_rss_bytes",
            "pk_bytes",
            "proof_bytes",
            "verify_gas",
            "market_gas",
            "rounds",
            "chunks",
            "frac_bits",
        ],
    )


@app.command("aggregation")
def bench_aggregation(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L")] = "10,50,100",
    params: Annotated[str, typer.Option(help="comma-separated model sizes d")] = "10000,1000000",
    peers: Annotated[bool, typer.Option(help="also time byzfl and flwr (from .venv/peers)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...], "summary": [...]}')] = False,
) -> None:
    """Seconds for our Krum, multi-Krum, median and trimmed mean against byzfl's and Flower's on
    the same float64 inputs (results checked for agreement), the two-stage rule per round after
    the first, and floor.read (one pass reading all updates). Peers run in .venv/peers, made by
    `make setup`. Reads no settings."""
    from fedmarket_benchmarks.aggregation import run, speedups

    rows = run(int_list(trainers, "--trainers"), int_list(params, "--params"), with_peers=peers)
    summary = speedups(rows)
    if as_json:
        emit(rows, True, "", [], {"summary": summary})
        return
    emit(
        rows, False, "seconds per call (best of 3 below 2 s)", ["impl", "op", "trainers", "params", "seconds", "agrees"]
    )
    table = Table(title="ours against the fastest peer, and against floor.read")
    for col in ("op", "trainers", "params", "ours_s", "fastest_peer", "speedup", "over_floor"):
        table.add_column(col)
    for s in summary:
        table.add_row(
            s["op"],
            str(s["trainers"]),
            f"{s['params']:,}",
            f"{s['ours_s']:.4g}",
            s["fastest_peer"] or "-",
            fmt(s["speedup"], "{:.1f}x"),
            f"{s['over_floor']:.1f}x",
        )
    stdout_console().print(table)


@app.command("data")
@short_runs
def bench_data(
    data: Annotated[
        str, typer.Option(help="comma-separated data sets: digits, breast_cancer, wine, or files")
    ] = "digits,breast_cancer,wine",
    label_column: Annotated[str, typer.Option(help="for files: the column holding each row's label")] = "label",
    model: Annotated[str, typer.Option(**BUILTIN_MODEL, help="lr | mlp | cnn")] = "lr",
    malicious: Annotated[int, typer.Option(min=0, max=3, help="attacking trainers of the 8 (their rows are lost)")] = 0,
    rounds: Annotated[int, typer.Option(min=1, help="market rounds")] = 5,
    seeds: Annotated[
        str, typer.Option(metavar="S[,S...]", help="seeds of the owner's split and the shares, a row each")
    ] = "0",
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    min_local_steps: MinLocalSteps = None,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]}')] = False,
) -> None:
    """The demo market (8 trainers, 5 rounds by default) on each data set against centralised training of
    the same model on all trainers' rows (as many epochs as a trainer trains in the market); both
    scored on the owner's held-out data, a row per seed. Target, without attackers: gap within 2
    points. Reads the FEDMARKET_* settings (a temporary store)."""
    import tempfile
    from pathlib import Path

    from fedmarket_benchmarks.data import run
    from fedmarket_schemas.market import ModelKind

    sources = [s.strip() for s in data.split(",") if s.strip()]
    if not sources:
        raise usage_error("--data", "no data set named")
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise usage_error("--seeds", f"{seeds!r} is not a comma-separated list of integers") from None
    if not seed_list:
        raise usage_error("--seeds", "no seed named")
    with tempfile.TemporaryDirectory(prefix="fedmarket-bench-data-") as tmp:
        try:
            rows = run(
                sources,
                ModelKind(model),
                label_column,
                malicious,
                Path(tmp),
                rounds=rounds,
                seeds=seed_list,
                batch_size=batch_size,
                learning_rate=learning_rate,
                min_local_steps=min_local_steps,
            )
        except ValueError as exc:
            raise usage_error("options", problems(exc)) from None
    emit(
        rows,
        as_json,
        "market against centralised training (accuracy on the owner's held-out data)",
        [
            "data",
            "seed",
            "model",
            "rounds",
            "batch_size",
            "learning_rate",
            "local_epochs",
            "rows",
            "features",
            "classes",
            "market_accuracy",
            "centralised_accuracy",
            "gap_points",
            "demo_wall_s",
        ],
    )


@app.command("round")
@short_runs
def bench_round(
    trainers: Annotated[str, typer.Option(help="comma-separated numbers of trainers L (at most 128)")] = "10,100",
    params: Annotated[str, typer.Option(help="comma-separated model sizes (parameters, about)")] = "10000,1000000",
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]}')] = False,
) -> None:
    """The whole round flow (fetch, open, validate, detect, aggregate, evaluate, store, finalize)
    and each of its task runs, against the floor measured in the same run: reading the L
    ciphertexts from the store and opening them once. The "round" row also has the run's own
    duration as Prefect recorded it (the call's seconds add the engine's teardown), the flow's
    peak memory and the bytes it wrote to disk. Targets at L = 100, d = 1e6: the flow within 3x the
    floor, peak within 3x the L x d float64 matrix, disk written within 2x the ciphertexts.
    Reads the FEDMARKET_* settings (a temporary store and results directory)."""
    from fedmarket_benchmarks.round import run

    sizes, models = int_list(trainers, "--trainers"), int_list(params, "--params")
    if max(sizes) > 128:
        raise usage_error("--trainers", "a market holds at most 128 trainers")
    rows = run(sizes, models)
    emit(
        rows,
        as_json,
        "round flow against its floor (read and open every ciphertext once)",
        [
            "trainers",
            "params",
            "step",
            "calls",
            "seconds",
            "floor_s",
            "ratio",
            "run_s",
            "peak_rss_gb",
            "peak_added_gb",
            "matrix_gb",
            "disk_written_mb",
            "ciphertext_mb",
        ],
    )


@app.command("dp")
def bench_dp(
    epsilons: Annotated[
        str, typer.Option(help="comma-separated privacy budgets over the whole market; inf: no DP")
    ] = "1,4,8,inf",
    attacks: Annotated[str, typer.Option(help="comma-separated attacks played by 3 of 8 (none: no attacker)")] = (
        "none,noise,sign_flip,alie"
    ),
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    model: Annotated[str, typer.Option(help="lr | mlp | cnn")] = "lr",
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]}')] = False,
) -> None:
    """What DP-SGD costs: digits, 8 trainers, 10 rounds, each trainer within epsilon (delta 1e-5)
    over the market: the final test accuracy, and under the default rule the share of honest
    submissions kept and of attackers' removed. Reads no settings."""
    from fedmarket.simulation.attacks import model_attacks
    from fedmarket_benchmarks.privacy import run

    try:
        budgets = [float(v) for v in epsilons.split(",") if v.strip()]
    except ValueError:
        budgets = []
    if not budgets or any(not b > 0 for b in budgets):
        raise usage_error("--epsilons", f"expected comma-separated positive numbers or inf, got {epsilons!r}")
    rows = run(
        budgets,
        str_list(attacks, "--attacks", ["none", *model_attacks()]),
        int_list(seeds, "--seeds", minimum=0),
        model=str_list(model, "--model", ["lr", "mlp", "cnn"])[0],
    )
    columns = ["model", "epsilon", "attack", "malicious", "seed", "final_accuracy", "honest_kept"]
    emit(
        rows,
        as_json,
        "DP-SGD: accuracy and detection against epsilon (8 trainers)",
        [*columns, "cross_trainer_accuracy"],
    )


@app.command("norm")
def bench_norm(
    params: Annotated[str, typer.Option(help="comma-separated model sizes d")] = "650",
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]}')] = False,
) -> None:
    """What a secure-aggregation trainer's norm-bound proof costs: the circuit's rows and setup
    (once per circuit, cached), one proof (seconds, bytes) and one verification. Reads
    FEDMARKET_ZK_CACHE_DIR and FEDMARKET_ZK_SRS_PATH."""
    from fedmarket.settings import load_settings
    from fedmarket_benchmarks.norm import run

    rows = run(int_list(params, "--params"), load_settings())
    columns = ["params", "logrows", "rows", "setup_s", "pk_bytes", "prove_s", "proof_bytes", "verify_s"]
    emit(rows, as_json, "Norm-bound proof: cost per trainer and per verification", [*columns, "norm_error"])


@app.command("secagg")
def bench_secagg(
    trainers: Annotated[str, typer.Option(help="comma-separated market sizes L")] = "8,32",
    params: Annotated[str, typer.Option(help="comma-separated model sizes d")] = "650,100000",
    rounds: Annotated[int, typer.Option(min=1, max=64, help="rounds each key bundle covers")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rows": [...]}')] = False,
) -> None:
    """What secure aggregation costs each party: dealing keys, masking, revealing shares and
    rebuilding the survivors' sum with a quarter of the trainers dropped after masking (seconds
    per trainer, bytes published). Reads no settings."""
    from fedmarket_benchmarks.secagg import run

    rows = run(int_list(trainers, "--trainers", minimum=2), int_list(params, "--params"), rounds=rounds)
    columns = ["trainers", "params", "dropped", "bundle_s", "bundle_bytes", "open_shares_s", "mask_s"]
    emit(
        rows,
        as_json,
        "Secure aggregation: cost per trainer and for the aggregator",
        [*columns, "reveal_s", "reveal_bytes", "recover_s", "max_abs_error"],
    )
