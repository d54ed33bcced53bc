"""The cache of resumable round steps.

A round step persists its result under `round_key`, a digest of everything the round's steps
compute from: market, round, the task and the owner's data by CID, the split seed, the round's
model and submissions (and the previous round's, for the cross-round check). A round flow killed
at any step and run again therefore picks up every finished step instead of recomputing it. The
key covers CIDs, which are content hashes, and the submissions' CIDs include the sealing's fresh
ephemeral keys, so two different rounds cannot share a key, not even across chains restarted from
the same genesis.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from functools import partial

from prefect import task

import fedmarket
from fedmarket.chain import MarketClient
from fedmarket.context import current_platform
from fedmarket.errors import ConfigError
from fedmarket.market_context import MarketContext, market_context
from fedmarket_tasks.common import RETRY_TRANSIENT, once_task
from fedmarket_tasks.sealed import SealedSerializer, prune


def round_key(market: MarketClient, round: int, context: MarketContext) -> str:
    """Digest of everything round `round`'s steps compute from."""

    def submitted(r: int) -> list[list]:
        return [[s.trainer, s.cid, s.commitment] for s in market.submissions(r)]

    parts: list = [
        fedmarket.__version__,
        market.chain.chain_id,
        market.address,
        round,
        context.spec_cid,
        context.data_cid,
        context.split_seed,
        market.model_cid(round),
        submitted(round),
    ]
    if round > 1:
        parts += [submitted(round - 1), market.round_state(round - 1).benign_mask]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def step_key(context, parameters) -> str:
    """A step's cache key: its name and its `key` argument (a `round_key`)."""
    key = parameters.get("key")
    if not key:
        raise ConfigError(f"round step {context.task.name} needs its key= (tasks/cache.py round_key)")
    return f"{context.task.name}-{key}"


def round_step(*, remote: bool = False, **options) -> Callable:
    """A resumable round step: its result is persisted, sealed (tasks/sealed.py), under its
    required keyword-only `key` argument (a step without one refuses to run); `remote` steps
    (chain, store) are also retried on transient failures, as `remote_task`."""

    def decorate(fn: Callable):
        key = inspect.signature(fn).parameters.get("key")
        if key is None or key.kind is not inspect.Parameter.KEYWORD_ONLY or key.default is not inspect.Parameter.empty:
            raise ConfigError(f"round step {fn.__name__} must take `key` as a keyword-only argument without a default")
        extra = RETRY_TRANSIENT if remote else {}
        persisted = dict(cache_key_fn=step_key, persist_result=True, result_serializer=SealedSerializer())
        return partial(task, **extra, **persisted)(**options)(fn)

    return decorate


@once_task(task_run_name="prune-results")
def prune_results(market_address: str) -> dict[str, int]:
    """Delete every persisted round result of the market (its opened updates, sealed): what
    the aggregator runs once the market is settled."""
    market = current_platform().market(market_address)
    context = market_context(market, current_platform().store)
    rounds = market.current_round()
    files, size = prune([round_key(market, r, context) for r in range(1, rounds + 1)])
    return {"rounds": rounds, "files": files, "bytes": size}
