"""One round, run by the aggregator: fetch -> validate -> detect outliers -> aggregate ->
evaluate -> store the aggregate -> finalize on chain (sources/004, section IV.B)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from fedmarket.commitments import commit
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import encode_update
from fedmarket.runtime import current_platform
from flows.state import AggregatorState
from schemas.rounds import RoundReport
from tasks.aggregate import aggregate, evaluate
from tasks.chain_ops import finalize_round
from tasks.contribution import RoundModels
from tasks.detect import detect_outliers
from tasks.fetch import fetch_submissions
from tasks.store_ops import put_bytes
from tasks.validate import validate_updates


@flow(name="fedmarket-round", flow_run_name="round-{round}", validate_parameters=False)
def round_flow(state: AggregatorState, round: int, open_gas: int = 0, open_block: int = 0) -> RoundReport:
    logger = get_run_logger()
    spec = state.spec
    market = current_platform().market(state.market)
    start_model = state.global_model

    opened = fetch_submissions(state.market, state.aggregator, round)
    models = validate_updates(opened, spec.model, parameter_count(spec.model))
    outliers = detect_outliers(models, spec.detector, state.history, start_model)
    new_global = aggregate(models, outliers, spec.aggregator, start_model)
    val_accuracy = evaluate(new_global, state.validation, spec.model)

    plaintext = encode_update(new_global, spec.model)
    aggregate_cid = put_bytes(plaintext)
    kept = set(outliers.kept)
    mask = sum(1 << i for t, i in zip(models.trainers, models.indices) if t in kept)
    tx = finalize_round(state.market, state.aggregator, round, aggregate_cid, commit(plaintext), mask, b"")

    gas_by_call = {
        "openRound": open_gas,
        "submit": market.submission_gas(round, from_block=open_block),
        "finalizeRound": tx.gas_used,
    }
    verifier = market.round_verifier()
    onchain = market.round_state(round)
    report = RoundReport(
        round=round,
        model_cid=market.model_cid(round),
        aggregate_cid=aggregate_cid,
        accuracy=val_accuracy,
        submitted=opened.submitted,
        flagged=outliers.flagged,
        flag_reasons=outliers.reasons,
        benign_mask=mask,
        gas_used=sum(gas_by_call.values()),
        gas_by_call=gas_by_call,
        tx_hashes={"finalizeRound": tx.tx_hash},
        verifier=verifier,
        verified=onchain.verified,
    )
    kept_rows = [i for i, t in enumerate(models.trainers) if t in kept]
    state.rounds.append(
        RoundModels(round, [models.trainers[i] for i in kept_rows], models.matrix[kept_rows], start_model)
    )
    state.global_model = new_global
    state.reports.append(report)
    logger.info(
        "round %d: validation accuracy %.4f, flagged %s, verifier %s",
        round, val_accuracy, outliers.flagged or "none", verifier or "none (round not proven)",
    )
    create_table_artifact(
        key=f"round-{round}",
        table=[
            {
                "trainer": t,
                "submitted": t in report.submitted,
                "flagged": t in outliers.flagged,
                "why": outliers.reasons.get(t, ""),
                "cross_round_cosine": outliers.cross_round_scores.get(t),
                "cross_trainer_distance": outliers.cross_trainer_scores.get(t),
            }
            for t in market.trainers()
        ],
        description=f"Round {round}: accuracy {val_accuracy:.4f}, aggregate {aggregate_cid}, "
        f"verifier {verifier or 'none: not proven'}",
    )
    return report
