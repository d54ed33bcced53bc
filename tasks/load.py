"""A round's inputs, read back from the chain and the content store through the cached fetch
step: what makes the aggregator stateless. A round flow can therefore run in any
process, triggered by a chain event, and a killed one can run again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedmarket.algorithms.contribution import RoundModels
from fedmarket.algorithms.outliers import History
from fedmarket.chain import MarketClient
from fedmarket.context import current_platform
from fedmarket.market_context import MarketContext
from fedmarket.ml.updates import decode_update
from fedmarket_schemas.rounds import ExclusionReason, LocalModels, Rejection
from fedmarket_tasks.cache import round_key
from fedmarket_tasks.fetch import fetch_updates


@dataclass(frozen=True)
class LoadedRound:
    key: str
    models: LocalModels
    start_model: np.ndarray


def load_round(market: MarketClient, aggregator: str, round: int, context: MarketContext) -> LoadedRound:
    """Round `round`'s start model and its fetched, opened and validated updates (a cached step)."""
    spec = context.spec
    key = round_key(market, round, context)
    start = decode_update(current_platform().store.get(market.model_cid(round)), spec.model)
    models = fetch_updates(
        market.address, aggregator, round, spec.model, spec.update_bounds, start, spec.training, key=key
    )
    return LoadedRound(key, _excluded_on_chain(models, market), start)


def _excluded_on_chain(models: LocalModels, market: MarketClient) -> LocalModels:
    """The chain's exclusions are final: a trainer it excludes stays out even where this run can
    use its update (a rerun that lost its cached steps, after a late upload), so every proof and
    step agrees with the instances the contract builds."""
    mask = market.excluded_mask(models.round)
    keep = [k for k, i in enumerate(models.indices) if not mask >> i & 1]
    if len(keep) == len(models.indices):
        return models
    rejected = dict(models.rejected)
    for log in market.events("SubmissionExcluded", round=models.round):
        trainer, reason = log["args"]["trainer"], ExclusionReason.of_code(int(log["args"]["reason"]))
        if trainer in models.trainers:
            rejected[trainer] = Rejection(reason=reason, detail="excluded on chain by an earlier run")
    return LocalModels(
        round=models.round,
        trainers=[models.trainers[k] for k in keep],
        indices=[models.indices[k] for k in keep],
        matrix=models.matrix[keep],
        rejected=rejected,
        privacy={
            models.trainers[k]: models.privacy[models.trainers[k]] for k in keep if models.trainers[k] in models.privacy
        },
    )


def history_before(market: MarketClient, aggregator: str, round: int, context: MarketContext) -> History:
    """The previous round as the chain recorded it: its updates, who was kept (the benign mask
    finalized on chain) and its start model."""
    history = History()
    if round <= 1:
        return history
    previous = load_round(market, aggregator, round - 1, context)
    mask = market.round_state(round - 1).benign_mask
    history.last_models = previous.models.matrix
    history.last_trainers = list(previous.models.trainers)
    history.last_kept = {t for t, i in zip(previous.models.trainers, previous.models.indices) if mask >> i & 1}
    history.last_start = previous.start_model
    return history


def benign_models(loaded: LoadedRound, benign_mask: int) -> RoundModels:
    """A loaded round's benign models (by the mask on chain), for the contribution metric."""
    rows = [k for k, i in enumerate(loaded.models.indices) if benign_mask >> i & 1]
    models = loaded.models
    return RoundModels(models.round, [models.trainers[k] for k in rows], models.matrix[rows], loaded.start_model)


def reported_epsilon(loaded: LoadedRound) -> dict[str, float]:
    """DP-SGD task: the epsilon each trainer of a loaded round reported spent."""
    return {trainer: spent.epsilon for trainer, spent in loaded.models.privacy.items()}


def privacy_reported(market: MarketClient, aggregator: str, rounds: int, context: MarketContext) -> dict[str, float]:
    """DP-SGD task: the epsilon each trainer reported spent in its latest usable update."""
    latest: dict[str, float] = {}
    for round in range(1, rounds + 1):
        latest.update(reported_epsilon(load_round(market, aggregator, round, context)))
    return latest
