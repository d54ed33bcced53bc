"""One round, run by the aggregator: fetch, open and validate -> exclude the unusable submissions on
chain -> detect outliers (or prove the round) -> aggregate -> evaluate -> store the aggregate ->
finalize on chain (sources/004, section IV.B).

The flow takes only the market's address and the round, and reads everything else back from the
chain and the content store (tasks/load.py), so a deployment triggered by a chain event can run
it in any process. It is resumable: the steps up to evaluation are cached by a digest of the
round's inputs, the aggregate is content-addressed, and finalizing reads chain state first, so a
run killed at any step and started again completes the round without recomputing finished steps
or sending a transaction twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedmarket.algorithms.outliers import PROVABLE_DETECTORS
from fedmarket.commitments import commit, round_layout
from fedmarket.context import current_platform
from fedmarket.errors import ProtocolError
from fedmarket.market_context import market_context
from fedmarket.ml.updates import decode_update, encode_update
from fedmarket.settings import load_settings
from fedmarket.zk import deployed_round_verifier_code
from fedmarket_schemas.market import Aggregation
from fedmarket_schemas.rounds import ExclusionReason, OutlierReport, RoundReport
from fedmarket_tasks.aggregate import aggregate, evaluate
from fedmarket_tasks.cache import round_key
from fedmarket_tasks.chain_ops import exclude_submissions, finalize_round
from fedmarket_tasks.detect import detect_outliers
from fedmarket_tasks.load import history_before, load_round
from fedmarket_tasks.prove import prove_round_step, proven_outliers
from fedmarket_tasks.report import progress, publish_round, publish_rounds, tag_run
from fedmarket_tasks.secure import (
    close_submissions,
    masked_epsilon,
    open_reveals,
    recover_mean,
    reveals_ready,
    wait_for_reveals,
)
from fedmarket_tasks.store_ops import put_bytes


def task_runner_for(address: str | None):
    """Where the heavy steps (detect, aggregate, evaluate) run: threads in the flow's process by
    default; with FEDMARKET_DASK_ADDRESS a Dask cluster, 'local' for one started in process,
    otherwise a scheduler address (its workers need fedmarket installed and, to share cached
    results across machines, a shared Prefect result storage)."""
    if not address:
        return None
    from prefect_dask import DaskTaskRunner

    if address == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})
    return DaskTaskRunner(address=address)


def _heavy(step, *args, **kwargs):
    """Submit a heavy step to the flow's task runner (Dask when configured) and wait for it."""
    return step.submit(*args, **kwargs).result()


@flow(name="fedmarket-round", flow_run_name="round-{round}-{market}")
def _round_flow(market: str, round: int, aggregator: str | None = None, wait: bool = True) -> RoundReport | None:
    """Run round `round` of `market` as its aggregator (default: this process's own key). In a
    secure-aggregation market with `wait` false (the deployment's runs, triggered by chain
    events), a round whose holders have not revealed enough is left for the listener's
    reveals-complete or reveals-grace-passed to run again: None, and no worker held meanwhile."""
    logger = get_run_logger()
    platform = current_platform()
    aggregator = aggregator or platform.me.address
    client = platform.market(market)
    tag_run("aggregator", client.address, round)
    if client.round_state(round).deadline == 0:
        raise ProtocolError(f"round {round} of market {client.address} has not been opened")
    context = market_context(client, platform.store)
    spec = context.spec
    if spec.aggregation == Aggregation.secure:
        return _secure_round(client, round, aggregator, context, wait)

    with progress(client.address, f"round {round}", steps=4) as step:
        loaded = load_round(client, aggregator, round, context)
        trainers = client.trainers()
        rejected = {trainers.index(t): why for t, why in loaded.models.rejected.items()}
        excluded_tx = exclude_submissions(client.address, aggregator, round, rejected)
        step()
        verifier = client.round_verifier()
        if verifier:
            # a proven round: the task's proven rule (which reads last round's benign mask, so no
            # history) and its aggregate, both checked equal to the float ones inside the proving step
            if spec.detector not in PROVABLE_DETECTORS:
                raise ProtocolError(
                    f"market {client.address} proves its rounds, but its task names detector {spec.detector!r}, "
                    f"which no circuit proves (provable: {', '.join(sorted(PROVABLE_DETECTORS))})"
                )
            kept_before = client.round_state(round - 1).benign_mask if round > 1 else 0
            layout = round_layout(client)
            code = deployed_round_verifier_code(platform.chain, verifier, split=layout.split)
            proof = _heavy(
                prove_round_step,
                loaded.models,
                trainers,
                loaded.start_model,
                kept_before,
                round,
                client.domain(round),
                code,
                layout,
                key=loaded.key,
            )
            outliers = proven_outliers(loaded.models, trainers, proof, spec.detector)
            new_global, calldata = proof.aggregate, proof.calldata()
        else:
            history = history_before(client, aggregator, round, context)
            outliers = _heavy(
                detect_outliers, loaded.models, spec.detector, history, loaded.start_model, key=loaded.key
            )
            new_global = _heavy(aggregate, loaded.models, outliers, spec.aggregator, loaded.start_model, key=loaded.key)
            calldata = b""
        step()
        val_accuracy = _heavy(evaluate, new_global, context.validation, spec.model, key=loaded.key)
        plaintext = encode_update(new_global, spec.model)
        aggregate_cid = put_bytes(plaintext)
        commitment = proof.aggregate_commitment if verifier else commit(plaintext)
        step()
        models = loaded.models
        kept = set(outliers.kept)
        mask = sum(1 << i for t, i in zip(models.trainers, models.indices) if t in kept)
        tx = finalize_round(client.address, aggregator, round, aggregate_cid, commitment, mask, calldata)
        step()

    report = _report(
        client,
        round,
        aggregate_cid,
        val_accuracy,
        outliers,
        mask,
        {"finalizeRound": tx, "exclude": excluded_tx},
        verifier=verifier,
        dp_epsilon={t: spent.epsilon for t, spent in loaded.models.privacy.items()},
    )
    logger.info(
        "round %d: validation accuracy %.4f, %d kept of %d submitted; finalizeRound %s (%s gas)",
        round,
        val_accuracy,
        len(outliers.kept),
        client.submitted_mask(round).bit_count(),
        tx.tx_hash,
        f"{tx.gas_used:,}",
    )
    for trainer in outliers.flagged:
        logger.info("round %d: flagged %s: %s", round, trainer, outliers.reasons.get(trainer, ""))
    if verifier:
        logger.info("round %d: proven (%s), verified by %s", round, proof.summary(), verifier)
    else:
        logger.info("round %d: not proven (the market names no round verifier)", round)
    publish_round(client.address, report, outliers, client.trainers())
    publish_rounds(client, context, measured={aggregate_cid: val_accuracy})
    return report


def _secure_round(client, round: int, aggregator: str, context, wait: bool = True) -> RoundReport | None:
    """A secure-aggregation round (fedmarket/secagg): exclude the submissions that cannot be
    counted (every check on public bytes), fix the survivors on the board, wait for the holders'
    share reveals, rebuild the survivors' mean from the chain and the store, finalize. No single
    model is opened, so no outlier rule runs; the benign mask is the survivors."""
    spec, settings = context.spec, current_platform().settings
    trainers = client.trainers()
    with progress(client.address, f"round {round}", steps=4) as step:
        close_submissions(client.address, aggregator, round, spec)
        step()
        grace_s = settings.secagg_reveal_grace_s
        if not client.round_state(round).finalized:  # a rerun of a finalized round reads what was revealed
            if wait:
                wait_for_reveals(client.address, round, poll_s=settings.poll_interval_s, grace_s=grace_s)
            elif not reveals_ready(client.address, round, grace_s=grace_s):
                get_run_logger().info("round %d: waiting for the holders' share reveals (no worker held)", round)
                return None
        new_global, recovery, proven, attribution = recover_mean(client.address, round, spec)
        counted = recovery.survivors if proven else ()
        if not proven:  # a survivor masked another model than it proved: the round counts nobody
            new_global = decode_update(current_platform().store.get(client.model_cid(round)), spec.model)
        step()
        val_accuracy = _heavy(
            evaluate, new_global, context.validation, spec.model, key=round_key(client, round, context)
        )
        plaintext = encode_update(new_global, spec.model)
        aggregate_cid = put_bytes(plaintext)
        step()
        mask = sum(1 << i for i in counted)
        tx = finalize_round(client.address, aggregator, round, aggregate_cid, commit(plaintext), mask, b"")
        step()
    submitted = [s.trainer for s in client.submissions(round)]
    reasons = {
        log["args"]["trainer"]: f"excluded: {ExclusionReason.of_code(int(log['args']['reason'])).value}"
        for log in client.events("SubmissionExcluded", round=round)
    }
    for i in recovery.dropped:
        reasons.setdefault(trainers[i], "dropped: not among the survivors the board fixed")
    for i in set(recovery.survivors) - set(counted):
        reasons[trainers[i]] = "voided: the survivors' masked models do not add up to the models they proved"
    if attribution is not None:  # each survivor's masked model checked on its own
        for i, why in attribution.named.items():
            reasons[trainers[i]] = f"voided, named: {why}"
        for u, v in attribution.disputed:
            for i, j in ((u, v), (v, u)):
                reasons[trainers[i]] += f"; its pair mask with trainer {j} is disputed, so it was not checked"
    outliers = OutlierReport(
        round=round,
        detector="none (secure aggregation)",
        kept=[trainers[i] for i in counted],
        flagged=[t for t in submitted if t in reasons],
        reasons=reasons,
    )
    excluded = client.last_event("SubmissionExcluded", round=round)
    calls = {
        "exclude": excluded[1] if excluded else None,
        "openReveals": open_reveals(client.address, aggregator, round),
        "finalizeRound": tx,
    }
    report = _report(
        client,
        round,
        aggregate_cid,
        val_accuracy,
        outliers,
        mask,
        calls,
        aggregation="secure",
        dp_epsilon=masked_epsilon(client.address, round, spec),
    )
    get_run_logger().info(
        "round %d (secure): validation accuracy %.4f, survivors %s, dropped %s, wrong shares %s",
        round,
        val_accuracy,
        list(recovery.survivors),
        list(recovery.dropped) or "none",
        list(recovery.invalid_shares) or "none",
    )
    publish_round(client.address, report, outliers, trainers)
    publish_rounds(client, context, measured={aggregate_cid: val_accuracy})
    return report


def _report(client, round, aggregate_cid, accuracy, outliers, mask, calls, **fields) -> RoundReport:
    """The round's report: `calls` names the round's own transactions (None: not sent)."""
    _, opened_tx = client.last_event("RoundOpened", round=round)
    sent = {"openRound": opened_tx, **{name: tx for name, tx in calls.items() if tx is not None}}
    gas_by_call = {name: tx.gas_used for name, tx in sent.items()}
    gas_by_call["submit"] = client.submission_gas(round, from_block=opened_tx.block_number)
    submissions = client.submissions(round)
    return RoundReport(
        round=round,
        model_cid=client.model_cid(round),
        aggregate_cid=aggregate_cid,
        accuracy=accuracy,
        submitted=[s.trainer for s in submissions],
        submission_cids={s.trainer: s.cid for s in submissions},
        flagged=outliers.flagged,
        flag_reasons=outliers.reasons,
        benign_mask=mask,
        gas_used=sum(gas_by_call.values()),
        gas_by_call=gas_by_call,
        tx_hashes={name: tx.tx_hash for name, tx in sent.items()},
        verifier=fields.pop("verifier", None),
        verified=client.round_state(round).verified,
        **fields,
    )


# The deployment's entrypoint: the task runner is chosen from the settings of the process that
# loads the flow (the worker's environment), as Prefect fixes a flow's runner at definition.
_runner = task_runner_for(load_settings().dask_address)
round_flow = _round_flow.with_options(task_runner=_runner) if _runner is not None else _round_flow
