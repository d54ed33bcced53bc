"""What every platform task shares: retries with exponential backoff on transient failures
(node or store unreachable) and never on a decided failure (a revert, a CID mismatch)."""

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
io_task = partial(
    task,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
compute_task = partial(task, cache_policy=NO_CACHE)
