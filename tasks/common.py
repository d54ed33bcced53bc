"""The two kinds of plain task (neither is cached; the resumable round steps are in
tasks/cache.py):

- `remote_task`: talks to the chain or the content store. Retried with exponential backoff on a
  transient failure (node or store unreachable), never on a decided one (a revert, a CID
  mismatch); FEDMARKET_RETRIES and FEDMARKET_RETRY_DELAY_S set how often and how soon. Steps with
  side effects read chain state first, which is what makes a retry or a rerun safe.
- `once_task`: runs once, a failure is final: a computation in this process, or a side effect
  that must not repeat (creating a market escrows a deposit; a retry would escrow a second).
"""

from __future__ import annotations

from functools import partial

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import PrefectHTTPStatusError
from prefect.tasks import exponential_backoff

from fedmarket.errors import ChainUnavailableError, StoreUnavailableError
from fedmarket.settings import load_settings

TRANSIENT = (ChainUnavailableError, StoreUnavailableError)


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a failure to reach something (node, store, Prefect API) that a later try
    may not meet: never a decision about anyone. A Prefect server answers 5xx when overloaded
    (SQLite's "database is locked" under many concurrent runs) or restarting."""
    if isinstance(exc, PrefectHTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, (*TRANSIENT, httpx.TransportError))


def retry_if_transient(task_, task_run, state) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - anything else is a decided failure
        return False
    return False


def retry_options(retries: int, delay_s: float) -> dict:
    """Prefect task options for `retries` retries of transient failures, `delay_s` doubling."""
    return dict(
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=delay_s) if retries else 0,
        retry_condition_fn=retry_if_transient,
    )


# Fixed when the tasks are defined, as Prefect fixes a task's options: from the settings of the
# process that imports them (the worker's environment for a deployment).
_settings = load_settings()
RETRY_TRANSIENT = retry_options(_settings.retries, _settings.retry_delay_s)

remote_task = partial(task, **RETRY_TRANSIENT, cache_policy=NO_CACHE)
once_task = partial(task, cache_policy=NO_CACHE)
