"""What the Prefect UI shows of every round and market: a table of trainers (submitted, flagged
and why, contribution, payout), a markdown summary that lists every CID and transaction hash, an
accuracy-per-round plot, and progress artifacts during long steps."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect import get_run_logger
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from fedmarket.context import current_platform
from fedmarket.units import eth
from fedmarket_schemas.audit import AuditReport
from fedmarket_schemas.rounds import OutlierReport, RoundReport
from fedmarket_schemas.settlement import SettlementReport


def artifact_key(market: str, *parts: object) -> str:
    """The key of a market's artifact on the current chain; a new version each time it is
    published (each round). Keys allow lowercase letters, digits and dashes only."""
    chain = current_platform().chain.instance
    return "-".join(["market", chain, market.lower().removeprefix("0x")[:12], *map(str, parts)])


def tag_run(role: str, market: str, round: int | None = None) -> None:
    """Tag this flow run with the role it acts in, its market, chain id and round: the UI filters
    runs by tag (flow runs page, "Tags"). Outside a flow run, nothing to tag."""
    run = FlowRunContext.get()
    if run is None or run.flow_run is None:
        return
    tags = {f"role:{role}", f"market:{market.lower()}", f"chain:{current_platform().chain.chain_id}"}
    if round is not None:
        tags.add(f"round:{round}")
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.flow_run.id, tags=sorted(set(run.flow_run.tags) | tags))
    except httpx.HTTPError as exc:  # tags help people filter; no run fails for want of them
        get_run_logger().warning("run not tagged (%s): %s", ", ".join(sorted(tags)), exc)


@contextmanager
def progress(market: str, what: str, steps: int) -> Iterator:
    """A progress artifact for a long step; call the yielded function after each of `steps`."""
    artifact_id = create_progress_artifact(0.0, description=f"{what}: {market}")
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        update_progress_artifact(artifact_id, min(100.0, 100.0 * done / steps))

    yield advance
    update_progress_artifact(artifact_id, 100.0)


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def cid_link(cid: str | None) -> str:
    """A CID as a markdown link through the configured IPFS gateway, else as code."""
    if not cid:
        return "none"
    gateway = current_platform().settings.ipfs_gateway_url
    return f"[`{cid}`]({str(gateway).rstrip('/')}/ipfs/{cid})" if gateway else f"`{cid}`"


def chain_link(value: str, kind: str = "tx") -> str:
    """A transaction hash (`kind` tx) or an address as a link through the configured explorer."""
    explorer = current_platform().settings.explorer_url
    return f"[`{value}`]({str(explorer).rstrip('/')}/{kind}/{value})" if explorer else f"`{value}`"


def publish_round(market: str, report: RoundReport, outliers: OutlierReport, trainers: list[str]) -> None:
    create_table_artifact(
        key=artifact_key(market, "round", report.round),
        table=[
            {
                "trainer": t,
                "submitted": t in report.submitted,
                "flagged": t in outliers.flagged,
                "why": outliers.reasons.get(t, ""),
                "cross_round_cosine": rounded(outliers.cross_round_scores.get(t)),
                "cross_trainer_distance": rounded(outliers.cross_trainer_scores.get(t)),
                **({"dp_epsilon": rounded(report.dp_epsilon.get(t), 3)} if report.dp_epsilon else {}),
            }
            for t in trainers
        ],
        description=f"Round {report.round} of {market}: validation accuracy {report.accuracy:.4f}",
    )
    lines = [
        f"# Round {report.round} of market `{market}`",
        "",
        f"- validation accuracy: **{report.accuracy:.4f}**",
        f"- global model in: {cid_link(report.model_cid)}",
        f"- aggregate out: {cid_link(report.aggregate_cid)}",
        f"- benign mask: `{report.benign_mask:#x}`; flagged: {', '.join(f'`{t}`' for t in report.flagged) or 'none'}",
        f"- proof: {'verified by ' + report.verifier if report.verified else 'none (no round verifier set: NOT proven)'}",
        "",
        "| transaction | hash | gas |",
        "|---|---|---|",
        *[
            f"| {name} | {chain_link(tx)} | {report.gas_by_call.get(name, '')} |"
            for name, tx in report.tx_hashes.items()
        ],
        "",
        "| trainer | update CID | flagged because | DP epsilon spent (reported) |",
        "|---|---|---|---|",
        *[
            f"| {chain_link(t, 'address')} | {cid_link(report.submission_cids.get(t))} | {report.flag_reasons.get(t, '')} | {_epsilon(report.dp_epsilon, t)} |"
            for t in trainers
        ],
    ]
    create_markdown_artifact(key=artifact_key(market, "round", report.round, "summary"), markdown="\n".join(lines))


def _epsilon(spent: dict[str, float], trainer: str) -> str:
    return f"{spent[trainer]:.3f}" if trainer in spent else "n/a"


def accuracy_plot(accuracies: dict[int, float], final_accuracy: float | None = None) -> bytes:
    """PNG of validation accuracy per round (and the final test accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rounds = sorted(accuracies)
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(rounds, [accuracies[r] for r in rounds], marker="o", label="validation")
    if final_accuracy is not None:
        ax.axhline(final_accuracy, linestyle="--", color="grey", label=f"final test {final_accuracy:.3f}")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_xticks(rounds)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def publish_settlement(
    market: str,
    report: SettlementReport,
    trainers: list[str],
    accuracies: dict[int, float],
    flagged_rounds: dict[str, list[int]],
    plot_cid: str,
    png: bytes,
) -> None:
    payouts = {p.account: p.wei for p in report.payouts}
    create_table_artifact(
        key=artifact_key(market, "trainers"),
        table=[
            {
                "trainer": t,
                "not_benign_in_rounds": ", ".join(map(str, flagged_rounds.get(t, []))) or "none",
                "contribution": rounded(report.contributions.get(t)),
                "contribution_onchain": report.contributions_onchain[i],
                "payout_eth": eth(payouts.get(t, 0)),
                **({"dp_epsilon": rounded(report.dp_epsilon.get(t), 3)} if report.dp_epsilon else {}),
            }
            for i, t in enumerate(trainers)
        ],
        description=f"Market {market}: final test accuracy {report.final_accuracy:.4f}",
    )
    # a data URI keeps the image in the artifact itself: the UI needs no access to our store
    create_image_artifact(
        image_url="data:image/png;base64," + base64.b64encode(png).decode(),
        key=artifact_key(market, "accuracy"),
        description=f"Accuracy per round of {market} (PNG also stored as {plot_cid})",
    )
    lines = [
        f"# Market `{market}` settled",
        "",
        f"- final test accuracy: **{report.final_accuracy:.4f}** ({report.accuracy_bps} bps); reward pool {eth(report.reward_pool_wei)} ETH",
        f"- settle transaction: {chain_link(report.tx_hash)} ({report.gas_used} gas)",
        f"- proof: {'verified by ' + report.verifier if report.verified else 'none (no settlement verifier set: NOT proven)'}",
        f"- owner refund: {eth(report.refund_wei)} ETH",
        f"- accuracy plot: {cid_link(plot_cid)}",
        *(
            [f"- DP-SGD: largest epsilon a trainer reports spent: {max(report.dp_epsilon.values()):.3f}"]
            if report.dp_epsilon
            else []
        ),
        "",
        "| round | validation accuracy |",
        "|---|---|",
        *[f"| {r} | {a:.4f} |" for r, a in sorted(accuracies.items())],
        "",
        "| account | role | payout (ETH) |",
        "|---|---|---|",
        *[f"| {chain_link(p.account, 'address')} | {p.role} | {eth(p.wei)} |" for p in report.payouts],
    ]
    create_markdown_artifact(key=artifact_key(market, "summary"), markdown="\n".join(lines))


def publish_audit(report: AuditReport) -> None:
    verdict = "passes" if report.passed else "FAILS"
    create_table_artifact(
        key=artifact_key(report.market, "audit"),
        table=[check.model_dump() for check in report.checks],
        description=f"Audit of market {report.market} ({report.phase}): {verdict}",
    )
