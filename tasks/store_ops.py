"""Content store steps."""

from __future__ import annotations

from fedmarket.context import current_platform
from fedmarket_tasks.common import remote_task


@remote_task(task_run_name="store-put")
def put_bytes(data: bytes) -> str:
    return str(current_platform().store.put(data))


@remote_task(task_run_name="store-get-{cid}")
def get_bytes(cid: str) -> bytes:
    return current_platform().store.get(cid)
