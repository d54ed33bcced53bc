"""`fedmarket owner ...`: the project owner's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedmarket_cli._common import (
    ADDRESS,
    AGGREGATION,
    CHAIN,
    DATA,
    DATA_HELP,
    HEX32,
    INPUT_FILE,
    KEY,
    MODEL,
    NORM_BOUND,
    BatchSize,
    LearningRate,
    LocalEpochs,
    MinLocalSteps,
    choice,
    print_json,
    problems,
    read_schema,
    short_runs,
    usage_error,
)

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    help="The project owner: create a market with its escrow, follow it, cancel it, withdraw.",
    no_args_is_help=True,
)


@app.command(
    "create",
    help="Publish the task and the owner's data by CID and create a market through the factory with the largest "
    f"possible payout in escrow. Prints {{market, factory, deposit, tx}}. Reads {KEY}, {CHAIN}, "
    "FEDMARKET_FACTORY_ADDRESS (unset: deploys a factory); with --prove-rounds also FEDMARKET_ZK_CACHE_DIR and "
    "FEDMARKET_ZK_SRS_PATH (unset: an SRS from gen_srs, NOT FOR PRODUCTION).",
)
@short_runs
def owner_create(
    data_file: Annotated[
        Path,
        typer.Option("--data", **DATA, help=f"owner's validation/test data: {DATA_HELP}"),
    ],
    aggregator: Annotated[str, typer.Option(**ADDRESS, help="aggregator's address")],
    aggregator_key: Annotated[
        str, typer.Option(**HEX32, help="aggregator's X25519 public key, 0x hex (`fedmarket keys show`)")
    ],
    trainers: Annotated[int, typer.Option(min=1, max=128, help="number of trainers L")] = 4,
    rounds: Annotated[int, typer.Option(min=1, help="training rounds T")] = 3,
    model: Annotated[
        str, typer.Option(**MODEL, help="lr | mlp | cnn | module:package.module:Class (your own torch.nn.Module)")
    ] = "lr",
    participation_reward_wei: Annotated[int, typer.Option(min=0, help="R_p per benign round")] = 10**16,
    trainer_bond_wei: Annotated[
        int,
        typer.Option(
            min=0,
            help="bond a trainer pays to register, back at its seed's reveal; a seat squatted without revealing is the owner's",
        ),
    ] = 10**16,
    aggregator_fee_wei: Annotated[int, typer.Option(min=0, help="aggregator's fee")] = 5 * 10**16,
    round_duration_s: Annotated[int, typer.Option(min=1, help="submission window of each round")] = 3600,
    reveal_window_s: Annotated[int, typer.Option(min=1, help="time trainers have to reveal their seeds")] = 3600,
    prove_rounds: Annotated[
        bool,
        typer.Option(
            help="every round proven with EZKL and verified by the market: builds the round circuit for L and the model (setup once per circuit, cached in FEDMARKET_ZK_CACHE_DIR; minutes and gigabytes at full size, see `fedmarket bench zk`) and deploys its verifier"
        ),
    ] = False,
    prove_settlement_rows: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="with --prove-rounds: settlement proven too, on a test chunk of this many rows of the owner's data, the chunk the trainers' split seed picks",
        ),
    ] = None,
    round_inputs: Annotated[
        str | None,
        typer.Option(
            parser=choice("kzg", "poseidon"),
            metavar="kzg|poseidon",
            help="with --prove-rounds: how the round circuit binds the models, Poseidon-hashed (the default, and the only "
            "choice with --prove-settlement-rows, whose circuit reads Poseidon commitments) or under KZG commitments "
            "(faster proving, more verification gas); `fedmarket bench zk` compares them",
        ),
    ] = None,
    round_chunks: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=16,  # EzklSplitRoundVerifier.MAX_CHUNKS (fedmarket.zk.MAX_ROUND_CHUNKS, not imported for --help)
            help="with --prove-rounds: prove each round in this many parameter chunks (one proof per chunk and one of "
            "the rule, each a fraction of one proof's memory; more verification gas), for rounds that one proof cannot "
            "hold (`fedmarket bench zk --chunks`); hashed inputs, not with --prove-settlement-rows",
        ),
    ] = None,
    settlement_parts: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=16,  # EzklSettlementVerifier.MAX_PARTS (fedmarket.zk.MAX_SETTLEMENT_PARTS, not imported for --help)
            help="with --prove-settlement-rows: prove each round's test chunk in this many proofs of equal rows (their "
            "counts add up; each a fraction of one proof's memory, a verification each), for chunks that one proof "
            "cannot hold (`fedmarket bench zk --circuits settlement --chunks`)",
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            **INPUT_FILE,
            help="the task's data schema, JSON (`fedmarket data profile FILE` proposes one); unset: digits'",
        ),
    ] = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    local_epochs: LocalEpochs = None,
    min_local_steps: MinLocalSteps = None,
    dp_noise_multiplier: Annotated[
        float | None,
        typer.Option(
            help="require DP-SGD of every trainer (Opacus) with this noise multiplier; needs --dp-epsilon-budget"
        ),
    ] = None,
    dp_epsilon_budget: Annotated[
        float | None, typer.Option(help="with DP-SGD: the epsilon past which a trainer refuses to train")
    ] = None,
    dp_max_grad_norm: Annotated[float, typer.Option(help="with DP-SGD: per-sample clipping norm")] = 1.0,
    dp_delta: Annotated[float, typer.Option(help="with DP-SGD: delta")] = 1e-5,
    aggregation: Annotated[str, typer.Option(**AGGREGATION)] = "plain",
    norm_bound: Annotated[float | None, typer.Option(**NORM_BOUND)] = None,
) -> None:
    from fedmarket_flows.owner import create_market_flow
    from fedmarket_schemas.market import DifferentialPrivacy, ModelKind, TrainingConfig

    chosen = {
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "local_epochs": local_epochs,
        "min_local_steps": min_local_steps,
    }
    training = {k: v for k, v in chosen.items() if v is not None}
    privacy = None
    try:
        TrainingConfig.for_model(ModelKind.lr, **training)
        if (dp_noise_multiplier is None) != (dp_epsilon_budget is None):
            raise usage_error(
                "--dp-noise-multiplier", "DP-SGD needs both --dp-noise-multiplier and --dp-epsilon-budget"
            )
        if dp_noise_multiplier is not None:
            privacy = DifferentialPrivacy(
                noise_multiplier=dp_noise_multiplier,
                epsilon_budget=dp_epsilon_budget,
                max_grad_norm=dp_max_grad_norm,
                delta=dp_delta,
            )
    except ValueError as exc:
        raise usage_error("options", problems(exc)) from None
    if round_inputs is not None and not prove_rounds:
        raise usage_error("--round-inputs", "binds a proven round's models: it needs --prove-rounds")
    if round_inputs == "kzg" and prove_settlement_rows is not None:
        raise usage_error(
            "--round-inputs",
            "kzg cannot go with --prove-settlement-rows: the settlement circuit reads Poseidon commitments",
        )
    if round_chunks is not None and (not prove_rounds or round_inputs == "kzg" or prove_settlement_rows is not None):
        raise usage_error(
            "--round-chunks",
            "splits a proven round of hashed inputs: it needs --prove-rounds, and cannot go with --round-inputs kzg "
            "or --prove-settlement-rows (the settlement circuit reads each whole model's Poseidon hash)",
        )
    if settlement_parts is not None and (prove_settlement_rows is None or prove_settlement_rows % settlement_parts):
        raise usage_error(
            "--settlement-parts",
            "splits a proven settlement's test chunk into equal parts: it needs --prove-settlement-rows, a multiple of it",
        )

    print_json(
        create_market_flow(
            data_file,
            aggregator,
            aggregator_key,
            trainers=trainers,
            rounds=rounds,
            model=model,
            participation_reward_wei=participation_reward_wei,
            trainer_bond_wei=trainer_bond_wei,
            aggregator_fee_wei=aggregator_fee_wei,
            round_duration_s=round_duration_s,
            reveal_window_s=reveal_window_s,
            prove_rounds=prove_rounds,
            test_rows=prove_settlement_rows,
            round_inputs=round_inputs,
            round_chunks=round_chunks,
            settlement_parts=settlement_parts,
            data_schema=read_schema(schema),
            training=training,
            privacy=privacy,
            aggregation=aggregation,
            norm_bound=norm_bound,
        )
    )


@app.command(
    "status",
    help=f"Print the market's phase, rounds, trainers and what each party is owed, as JSON, from the chain alone. Reads {CHAIN}.",
)
def owner_status(market: Annotated[str, typer.Option(**ADDRESS, help="market address")]) -> None:
    from fedmarket.context import current_platform

    client = current_platform().market(market)
    trainers = client.trainers()
    rounds = []
    for r in range(1, client.current_round() + 1):
        state = client.round_state(r)
        rounds.append(
            {
                "round": r,
                "deadline": state.deadline,
                "submitted_mask": client.submitted_mask(r),
                "finalized": state.finalized,
                "verified": state.verified,
                "benign_mask": state.benign_mask,
            }
        )
    parties = [client.owner(), client.aggregator(), *trainers]
    print_json(
        {
            "market": client.address,
            "phase": client.phase(),
            "rounds_total": client.round_count(),
            "rounds": rounds,
            "trainers": trainers,
            "active_mask": client.active_mask() if client.phase() not in ("Registration", "SeedReveal") else 0,
            "deposit": client.deposit(),
            "balance": client.balance(),
            "owed": {p: client.owed(p) for p in dict.fromkeys(parties)},
        }
    )


@app.command(
    "export",
    help="Write the market's final model as ONNX: the last round's aggregate read by the CID on chain, "
    "checked against the contract's commitment, with the task's input scaling in front (raw feature "
    f"columns in, logits out), and checked with onnxruntime against torch on the owner's validation rows. Reads {CHAIN}.",
)
def owner_export(
    market: Annotated[str, typer.Option(**ADDRESS, help="market address")],
    onnx: Annotated[
        Path, typer.Option(dir_okay=False, writable=True, resolve_path=True, help="where to write the model")
    ],
) -> None:
    from fedmarket.context import current_platform
    from fedmarket.export import export_final_model

    platform = current_platform()
    print_json(export_final_model(platform.market(market), platform.store, onnx).__dict__)


@app.command(
    "cancel", help=f"Cancel a market still in registration; the deposit becomes withdrawable. Reads {KEY}, {CHAIN}."
)
def owner_cancel(market: Annotated[str, typer.Option(**ADDRESS, help="market address")]) -> None:
    from fedmarket.context import current_platform

    platform = current_platform()
    tx = platform.market(market).cancel(platform.me.account)
    print_json({"market": market, "tx": tx.tx_hash, "phase": platform.market(market).phase()})


@app.command("withdraw", help=f"Withdraw what the market owes this key (the owner's refund). Reads {KEY}, {CHAIN}.")
def owner_withdraw(market: Annotated[str, typer.Option(**ADDRESS, help="market address")]) -> None:
    from fedmarket.context import current_platform

    platform = current_platform()
    client = platform.market(market)
    owed = client.owed(platform.me.address)
    if owed == 0:
        print_json({"market": market, "withdrawn": 0})
        return
    tx = client.withdraw(platform.me.account)
    print_json({"market": market, "withdrawn": owed, "tx": tx.tx_hash})
