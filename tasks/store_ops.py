"""Content store steps."""

from __future__ import annotations

from fedmarket.runtime import current_platform
from tasks.common import io_task


@io_task(task_run_name="store-put")
def put_bytes(data: bytes) -> str:
    return str(current_platform().store.put(data))


@io_task(task_run_name="store-get-{cid}")
def get_bytes(cid: str) -> bytes:
    return current_platform().store.get(cid)
