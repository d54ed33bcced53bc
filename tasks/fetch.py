"""Fetch step: the round's submissions from chain, each one taken from start to end by one of the
process's threads: its ciphertext fetched by CID (bytes are checked against the CID), opened with the
aggregator's key and the trainer's registered key, checked against the trainer's on-chain
commitment, decoded into its row of the round's matrix and validated (fedmarket/exclusions.py
`recheck`: the task model's update format, finite values, the task's bounds on its entries and on
its distance from the round's start model, and in a DP-SGD task the privacy its trainer spent
within the task's budget). The round thus holds its matrix and one update's bytes per thread,
never every opened update beside the matrix.

A trainer whose submission fails any check is recorded with the reason and its evidence (the
envelope's key, once derived) and left out, as is a CID first submitted elsewhere (a replay); the
round goes on. A store or node that cannot be reached is no verdict about anyone: the step fails,
Prefect retries it, and a failed step is not cached, so the next run fetches again. The validated
matrix is the step's persisted result (sealed, tasks/sealed.py): the one stored copy of the
round's updates.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fedmarket.algorithms.linalg import THREADS, fresh_array
from fedmarket.commitments import round_circuit
from fedmarket.context import current_platform
from fedmarket.crypto import Envelope, SealContext, submission_key
from fedmarket.exclusions import UNUSABLE, recheck, rejection, replayed
from fedmarket_schemas.market import ModelConfig, TrainingConfig, UpdateBounds
from fedmarket_schemas.rounds import LocalModels, Rejection
from fedmarket_schemas.trainer import PrivacySpent
from fedmarket_tasks.cache import round_step


@round_step(remote=True, task_run_name="fetch-updates-r{round}")
def fetch_updates(
    market_address: str,
    aggregator: str,
    round: int,
    model: ModelConfig,
    bounds: UpdateBounds,
    start_model: np.ndarray,
    training: TrainingConfig | None = None,
    *,
    key: str,
) -> LocalModels:
    platform = current_platform()
    market = platform.market(market_address)
    box_key = platform.party(aggregator).box_key
    submissions = market.submissions(round)
    sender_keys = market.encryption_keys([s.trainer for s in submissions])
    first_seen = market.first_submissions()
    circuit = round_circuit(market, model, platform.settings) if market.round_verifier() is not None else None
    matrix = fresh_array((len(submissions), start_model.size))  # row k: submission k's, then compacted

    def check(k: int, sub) -> tuple[Rejection | None, PrivacySpent | None]:
        """Submission k into row k: its rejection, or what its trainer reports spent."""
        if replay := replayed(sub.cid, first_seen.get(sub.cid), round, sub.trainer):
            return replay, None
        context = SealContext(platform.chain.chain_id, market.address, round, sub.trainer)
        envelope_key = None
        try:
            raw = platform.store.get(sub.cid)
            envelope_key = submission_key(Envelope.parse(raw), recipient=box_key, sender=sender_keys[sub.trainer])
            _, spent = recheck(
                raw, envelope_key, context, sub.commitment, model, bounds, start_model, circuit, training, out=matrix[k]
            )
        except UNUSABLE as exc:
            # an unreachable store re-raises here: the step fails (retried, never cached)
            return rejection(exc, envelope_key), None
        return None, spent

    # submissions on every core (hashing, opening and decoding release the GIL); one at a time
    # where a proven market's commitments go through EZKL, whose bindings say nothing of threads.
    # A store out of reach fails the step at once: map cancels the reads not yet started.
    with ThreadPoolExecutor(THREADS if circuit is None else 1) as pool:
        checked = list(pool.map(check, range(len(submissions)), submissions))
    trainers: list[str] = []
    indices: list[int] = []
    privacy: dict[str, PrivacySpent] = {}
    rejected: dict[str, Rejection] = {}
    for k, (sub, (rejected_as, spent)) in enumerate(zip(submissions, checked)):
        if rejected_as is not None:
            rejected[sub.trainer] = rejected_as
            continue
        if k != len(trainers):
            matrix[len(trainers)] = matrix[k]  # the kept rows first, in chain order
        trainers.append(sub.trainer)
        indices.append(sub.index)
        if spent is not None:
            privacy[sub.trainer] = spent
    return LocalModels(
        round=round,
        trainers=trainers,
        indices=indices,
        matrix=matrix[: len(trainers)],  # the leading rows: contiguous, no copy
        rejected=rejected,
        privacy=privacy,
    )
