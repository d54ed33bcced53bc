"""Settlement, run by the aggregator after the last round: final test accuracy, contributions
(RLOO by default), and `settle` on chain, which computes every payout by eq. (5) of sources/004.

Like the round flow it takes only the market's address, rebuilds every round's benign models from
the chain and the store (cached steps), and reads chain state before it sends: run twice, it
settles once. Once settled, it deletes the market's persisted round results, which hold the
opened updates (`fedmarket aggregator prune` does the same by hand).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedmarket.algorithms.contribution import PROVEN_CONTRIBUTION, inclusion, to_onchain
from fedmarket.chain import contribution_step
from fedmarket.context import current_platform
from fedmarket.errors import ProtocolError
from fedmarket.market_context import market_context, seed_int
from fedmarket.ml.data import decode_dataset
from fedmarket.ml.updates import decode_update
from fedmarket.units import eth
from fedmarket.zk import DataChunks, deployed_verifier_code, round_rloo_seed, round_test_chunk
from fedmarket_schemas.market import Aggregation
from fedmarket_schemas.settlement import Payout, SettlementReport
from fedmarket_tasks.aggregate import accuracy_of
from fedmarket_tasks.cache import prune_results
from fedmarket_tasks.chain_ops import prove_contributions, settle, withdraw
from fedmarket_tasks.contribute import assess_contributions
from fedmarket_tasks.load import benign_models, load_round, privacy_reported, reported_epsilon
from fedmarket_tasks.prove import prove_contributions_step, proven_contributions
from fedmarket_tasks.report import (
    accuracy_plot,
    progress,
    publish_rounds,
    publish_settlement,
    tag_run,
    validation_accuracies,
)
from fedmarket_tasks.secure import masked_epsilon
from fedmarket_tasks.store_ops import get_bytes, put_bytes


@flow(name="fedmarket-settlement", flow_run_name="settle-{market}")
def settlement_flow(market: str, aggregator: str | None = None, withdraw_fee: bool = True) -> SettlementReport:
    """Settle `market` as its aggregator; with `withdraw_fee`, also withdraw the aggregator's fee."""
    logger = get_run_logger()
    platform = current_platform()
    aggregator = aggregator or platform.me.address
    client = platform.market(market)
    tag_run("aggregator", client.address)
    if client.phase() not in ("Settlement", "Settled"):
        raise ProtocolError(
            f"market {client.address} is in phase {client.phase()}: settlement needs every round finalized"
        )
    context = market_context(client, platform.store)
    spec = context.spec
    rounds = client.round_count()

    proven = client.settlement_verifier() is not None
    secure = spec.aggregation == Aggregation.secure
    # every round's benign models, the float measure's input; a proven market reads each round in
    # its own proof, and a secure market has none to read
    reads_rounds = not proven and not secure
    with progress(client.address, "settlement", steps=(0 if secure else rounds) + 2) as step:
        history, dp_epsilon = [], {}
        if reads_rounds:
            for r in range(1, rounds + 1):
                loaded = load_round(client, aggregator, r, context)
                history.append(benign_models(loaded, client.round_state(r).benign_mask))
                dp_epsilon.update(reported_epsilon(loaded))
                step()
        elif proven and spec.training.dp:
            dp_epsilon = privacy_reported(client, aggregator, rounds, context)
        final_cid, _ = client.aggregate_of(rounds)
        final_model = decode_update(get_bytes(final_cid), spec.model)
        final_accuracy = accuracy_of(final_model, context.test, spec.model)
        trainers = client.trainers()
        if proven:
            if spec.contribution != PROVEN_CONTRIBUTION:
                raise ProtocolError(
                    f"market {client.address} proves its settlement, which pays {PROVEN_CONTRIBUTION}, "
                    f"but its task names {spec.contribution!r}"
                )
            # proven: accuracy and contributions are the circuits' outputs, one proof per round
            # (RLOO on the round's committed test chunk, fedmarket/zk/settlement_circuit.py),
            # summed by the contract
            accuracy_bps, per_round = _prove(client, aggregator, context, final_model, trainers, step)
            onchain = [sum(vector[i] for vector in per_round) for i in range(len(trainers))]
            contributions = proven_contributions(per_round, trainers)
        elif secure:  # no single model exists: who was counted, per round
            for r in range(1, rounds + 1):  # and, in a DP-SGD task, what each last reported
                dp_epsilon.update(masked_epsilon(client.address, r, spec))
            accuracy_bps = int(final_accuracy * 10_000)
            masks = [state.benign_mask for state in client.round_states(list(range(1, rounds + 1)))]
            contributions = inclusion.of_masks(masks, trainers)
            onchain = to_onchain(contributions, trainers)
        else:
            accuracy_bps = int(final_accuracy * 10_000)
            # the RLOO subsets come from a seed the contract fixes (split seed + final model), not
            # from a seed the aggregator could pick
            contributions = assess_contributions(
                history, context.test, spec.model, spec.contribution, seed_int(client.rloo_seed())
            )
            # only kept (benign) trainers have contributions; the contract refuses a positive share
            # for a trainer never benign, so a wrong vector fails there rather than being clamped here
            onchain = to_onchain(contributions, trainers)
        step()
        tx = settle(client.address, aggregator, accuracy_bps, onchain)
        step()

    credited, _ = client.last_event("Settled")
    payouts = [Payout(account=t, role="trainer", wei=int(w)) for t, w in zip(trainers, credited["payouts"])]
    payouts.append(Payout(account=client.aggregator(), role="aggregator", wei=int(credited["aggregatorFee"])))
    verifier = client.settlement_verifier()
    report = SettlementReport(
        final_accuracy=final_accuracy,
        accuracy_bps=accuracy_bps,
        reward_pool_wei=int(credited["rewardPool"]),
        contributions=contributions.total,
        contributions_onchain=onchain,
        payouts=payouts,
        refund_wei=int(credited["ownerRefund"]),
        gas_used=tx.gas_used,
        tx_hash=tx.tx_hash,
        verifier=verifier,
        verified=bool(credited["verified"]),
        dp_epsilon=dp_epsilon,
    )
    if withdraw_fee and client.owed(aggregator) > 0:
        withdraw(client.address, aggregator)

    accuracies = validation_accuracies(client, context)
    png = accuracy_plot(accuracies, final_accuracy)
    masks = {state.round: state.benign_mask for state in client.round_states(list(range(1, rounds + 1)))}
    flagged = {t: [r for r, mask in masks.items() if not mask >> i & 1] for i, t in enumerate(trainers)}
    publish_settlement(client.address, report, trainers, accuracies, flagged, put_bytes(png), png)
    publish_rounds(client, context, final_accuracy=final_accuracy)
    pruned = prune_results(client.address)  # settled: the opened updates are no longer needed
    logger.info(
        "settled %s: test accuracy %.4f, %d evaluations for contributions; settle %s (%s gas, %s); "
        "%d sealed result files pruned",
        client.address,
        final_accuracy,
        contributions.evaluations,
        tx.tx_hash,
        f"{tx.gas_used:,}",
        f"verified by {verifier}" if report.verified else "not proven",
        pruned["files"],
    )
    for payout in payouts:
        logger.info("payout to %s (%s): %s ETH", payout.account, payout.role, eth(payout.wei))
    return report


def _prove(client, aggregator: str, context, final_model, trainers: list[str], step) -> tuple[int, list[list[int]]]:
    """Prove and record every round's contributions, in order: (the final model's accuracy over
    the rounds' test chunks, in bps as the contract averages it; each round's vector). A round
    already recorded on chain is read back, not proven again."""
    spec, rounds = context.spec, client.round_count()
    data = decode_dataset(get_bytes(context.data_cid))
    chunks = DataChunks.of(data, spec.test_chunk_rows, spec.model, rounds, spec.test_chunk_parts)
    code = deployed_verifier_code(current_platform().chain, client.settlement_verifier())
    split_seed, rloo_seed = client.split_seed(), client.rloo_seed()
    accuracies, per_round = [], []
    for r in range(1, rounds + 1):
        if (recorded := client.last_event("ContributionsProven", round=r)) is not None:
            accuracy, vector = int(recorded[0]["accuracyBps"]), [int(c) for c in recorded[0]["contributions"]]
        else:
            loaded = load_round(client, aggregator, r, context)
            proof = prove_contributions_step(
                loaded.models,
                trainers,
                final_model,
                round_test_chunk(data, spec.test_chunk_rows, split_seed, r, rounds),
                client.round_state(r).benign_mask,
                round_rloo_seed(rloo_seed, r),
                client.domain(contribution_step(r)),
                spec.model,
                code,
                r,
                spec.test_chunk_parts,
                key=f"{loaded.key}-contributions",
            )
            calldata = proof.calldata(split_seed, chunks)
            prove_contributions(client.address, aggregator, r, proof.accuracy_bps, proof.contributions, calldata)
            accuracy, vector = proof.accuracy_bps, proof.contributions
        accuracies.append(accuracy)
        per_round.append(vector)
        step()
    return sum(accuracies) // rounds, per_round
