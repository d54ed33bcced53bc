"""What every platform task shares: retries with exponential backoff on transient failures
(node or store unreachable) and never on a decided failure (a revert, a CID mismatch); and the
cache of resumable round steps."""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from fedmarket.errors import ChainUnavailableError, StoreUnavailableError

TRANSIENT = (ChainUnavailableError, StoreUnavailableError)


def retry_if_transient(task_, task_run, state) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - anything else is a decided failure
        return False
    return False


# Chain and store steps: retried with backoff. Steps with side effects are not cached: the flows
# read chain state first, which is what makes a rerun safe.
RETRY_TRANSIENT = dict(
    retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1), retry_condition_fn=retry_if_transient
)
io_task = partial(task, **RETRY_TRANSIENT, cache_policy=NO_CACHE)
compute_task = partial(task, cache_policy=NO_CACHE)


def step_key(context, parameters) -> str | None:
    """Cache key of a resumable round step: the step's name and its `key` argument, a digest of
    everything the step's result depends on (tasks/resume.py: market, round, CIDs). Without a key
    the step is not cached."""
    key = parameters.get("key")
    return f"{context.task.name}-{key}" if key else None


# Round steps: their results are persisted and looked up by `step_key`, so a round flow killed at
# any step and run again picks up every finished step instead of recomputing it.
io_step = partial(task, **RETRY_TRANSIENT, cache_key_fn=step_key, persist_result=True)
compute_step = partial(task, cache_key_fn=step_key, persist_result=True)
