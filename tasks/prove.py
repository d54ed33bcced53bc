"""Proving steps, in markets with verifiers. A round: the statement of the task's proven rule
(`two_stage_proven`) over every registered trainer's slot, proven with the circuit built for the
market's shape (cached by circuit hash, set up once); the mask and the aggregate that go on chain
are the proof's (round_proof.prove_round says where they may differ from the float rule's).
Settlement: the statement of fedmarket/zk/settlement_circuit.py, once per round; the accuracy and
contributions that go on chain are the proofs' outputs."""

from __future__ import annotations

import numpy as np

from fedmarket.algorithms.contribution import PROVEN_CONTRIBUTION
from fedmarket.context import current_platform
from fedmarket.ml.data import Dataset
from fedmarket.zk import (
    RoundLayout,
    RoundProof,
    RoundStatement,
    SettlementProof,
    SettlementStatement,
    SplitRoundProof,
    build_market_round,
    build_settlement_circuit,
    check_round_verifiers,
    check_verifier,
    chunk_rows,
    expected_prove_s,
    expected_round_prove_s,
    part_rows,
    prove_market_round,
    prove_settlement,
    rloo_subsets,
    verifier_builds,
)
from fedmarket_schemas.market import ModelConfig
from fedmarket_schemas.rounds import LocalModels, OutlierReport
from fedmarket_schemas.settlement import ContributionReport
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.report import timed_progress


@round_step(task_run_name="prove-round-r{round}")
def prove_round_step(
    models: LocalModels,
    trainers: list[str],
    start_model: np.ndarray,
    kept_before: int,
    round: int,
    domain: int,
    verifier_code: list[bytes],
    layout: RoundLayout,
    *,
    key: str,
) -> RoundProof | SplitRoundProof:
    """`trainers`: the market's, in slot order; `start_model`: the round's global model (the
    contract's model commitment); `kept_before`: the previous round's benign mask on
    chain (0 in round 1); `domain`: the market's `domain(round)`; `verifier_code`: the runtime code
    of each EZKL verifier behind the market's round adapter (fedmarket.zk.deployed_round_verifier_code),
    which this machine's builds must compile to before it proves anything; `layout`: how the
    rounds are proven (commitments.round_layout). A rejected submission is absent from the
    statement, as it is from the instances once excluded on chain."""
    rows = dict(zip(models.trainers, models.matrix))
    slots = [rows.get(t) for t in trainers]
    statement = RoundStatement(slots, round, domain, kept_before, start=np.asarray(start_model, dtype=np.float64))
    circuit = build_market_round(layout, len(trainers), statement.dim, current_platform().settings)
    check_round_verifiers(circuit, verifier_code)
    named = " + ".join(b.name for b in verifier_builds(circuit))
    with timed_progress(f"round {round} proof, circuit {named}", expected_round_prove_s(circuit)):
        return prove_market_round(circuit, statement)


def proven_outliers(
    models: LocalModels, trainers: list[str], proof: RoundProof | SplitRoundProof, detector: str
) -> OutlierReport:
    """The proof's mask as the round's outlier report, under the task's (proven) rule's name; the
    excluded submissions are flagged with their reasons."""
    kept = [t for t in models.trainers if proof.mask[trainers.index(t)]]
    reasons = {t: f"excluded: {why.describe()}" for t, why in models.rejected.items()}
    reasons.update({t: proof.reasons[trainers.index(t)] for t in models.trainers if t not in kept})
    return OutlierReport(round=models.round, detector=detector, kept=kept, flagged=sorted(reasons), reasons=reasons)


@round_step(task_run_name="prove-contributions-r{round}")
def prove_contributions_step(
    models: LocalModels,
    trainers: list[str],
    final_model: np.ndarray,
    test: Dataset,
    mask: int,
    seed: int,
    domain: int,
    model: ModelConfig,
    verifier_code: bytes,
    round: int,
    parts: int = 1,
    *,
    key: str,
) -> SettlementProof:
    """The settlement statement over round `round`'s slots, the final model, the round's test
    chunk and the RLOO subsets the contract derives from `seed` (the round's, round_rloo_seed)
    and the round's mask, proven in `parts` proofs of the chunk's rows; `verifier_code` as for
    prove_round_step, of the settlement verifier."""
    rows = dict(zip(models.trainers, models.matrix))
    statement = SettlementStatement(
        [rows.get(t) for t in trainers],
        np.asarray(final_model, dtype=np.float64),
        chunk_rows(test, model),
        rloo_subsets(seed, mask, len(trainers)),
        domain,
        model,
    )
    build = build_settlement_circuit(len(trainers), model, part_rows(len(test), parts), current_platform().settings)
    check_verifier(build, verifier_code)
    expected = expected_prove_s(build.dir)
    with timed_progress(
        f"round {round} contributions proof in {parts} part(s), circuit {build.name}",
        None if expected is None else expected * parts,
    ):
        return prove_settlement(build, statement, parts)


def proven_contributions(per_round: list[list[int]], trainers: list[str]) -> ContributionReport:
    """Every round's proven contribution vector (RLOO, correct-count differences) and their sums."""
    rounds = [{t: float(c) for t, c in zip(trainers, vector)} for vector in per_round]
    total = {t: float(sum(vector[i] for vector in per_round)) for i, t in enumerate(trainers)}
    return ContributionReport(
        method=PROVEN_CONTRIBUTION,
        per_round=rounds,
        total=total,
        evaluations=(2 * len(trainers) + 1) * len(per_round),
        utility="correct count",
    )
