"""The audit of one market as a task: it reads the chain and the store only, so a node or store
that cannot be reached is retried (remote_task), never reported as a failed check."""

from __future__ import annotations

from fedmarket.audit import audit_market
from fedmarket.context import current_platform
from fedmarket_schemas.audit import AuditReport
from fedmarket_tasks.common import remote_task


@remote_task(name="audit-market")
def audit_market_task(market: str) -> AuditReport:
    platform = current_platform()
    return audit_market(platform.market(market), platform.store)
