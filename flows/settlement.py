"""Settlement, run by the aggregator after the last round: final test accuracy, contributions
(RLOO by default), and `settle` on chain, which computes every payout by eq. (5) of sources/004."""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedmarket.runtime import current_platform
from flows.state import AggregatorState, seed_int
from schemas.settlement import Payout, SettlementReport
from tasks.aggregate import evaluate
from tasks.chain_ops import settle
from tasks.contribute import assess_contributions, to_onchain


@flow(name="fedmarket-settlement", validate_parameters=False)
def settlement_flow(state: AggregatorState) -> SettlementReport:
    logger = get_run_logger()
    market = current_platform().market(state.market)
    spec = state.spec
    final_accuracy = evaluate(state.global_model, state.test, spec.model)
    accuracy_bps = int(final_accuracy * 10_000)
    # the RLOO subsets come from a seed the contract fixes (split seed + final model), not from
    # a seed the aggregator could pick
    report = assess_contributions(state.rounds, state.test, spec.model, spec.contribution, seed_int(market.rloo_seed()))
    trainers = market.trainers()
    # only kept (benign) trainers have contributions; the contract refuses a positive share for
    # a trainer never benign, so a wrong vector fails there rather than being clamped here
    onchain = to_onchain(report, trainers)
    tx = settle(state.market, state.aggregator, accuracy_bps, onchain, b"")

    owner = market.owner()
    payouts = [Payout(account=t, role="trainer", wei=market.owed(t)) for t in trainers]
    payouts.append(Payout(account=state.aggregator, role="aggregator", wei=market.owed(state.aggregator)))
    verifier = market.settlement_verifier()
    logger.info("settled: test accuracy %.4f, %d evaluations for contributions", final_accuracy, report.evaluations)
    return SettlementReport(
        final_accuracy=final_accuracy,
        accuracy_bps=accuracy_bps,
        reward_pool_wei=market.reward_pool_for(accuracy_bps),
        contributions=report.total,
        contributions_onchain=onchain,
        payouts=payouts,
        refund_wei=market.owed(owner),
        gas_used=tx.gas_used,
        tx_hash=tx.tx_hash,
        verifier=verifier,
        verified=verifier is not None,
    )
