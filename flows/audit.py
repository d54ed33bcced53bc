"""The audit as a Prefect flow: run after every settlement (deployment `audit`, triggered by
`fedmarket.market.settled`) or by hand from the UI, it publishes the table of checks as an
artifact and fails the run when a check fails, so an automation can alert on it."""

from __future__ import annotations

from prefect import flow

from fedmarket.errors import ProtocolError
from fedmarket_schemas.audit import AuditReport
from fedmarket_tasks.audit import audit_market_task
from fedmarket_tasks.report import publish_audit, tag_run


@flow(name="fedmarket-audit", flow_run_name="audit-{market}")
def audit_flow(market: str) -> AuditReport:
    tag_run("auditor", market)
    report = audit_market_task(market)
    publish_audit(report)
    if not report.passed:
        names = ", ".join(c.name for c in report.failures())
        raise ProtocolError(f"market {market} fails its audit: {names}")
    return report
