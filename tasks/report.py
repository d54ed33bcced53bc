"""What the Prefect UI shows of every round and market: a table of trainers (submitted, flagged
and why, contribution, payout), a markdown summary that lists every CID and transaction hash, the
market's rounds side by side, an accuracy-per-round plot, and progress artifacts during long
steps (a proof's with its elapsed and expected time)."""

from __future__ import annotations

import base64
import contextvars
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_UI_URL

from fedmarket.context import current_platform
from fedmarket.errors import ChainUnavailableError, StoreUnavailableError
from fedmarket.ml.training import accuracy
from fedmarket.ml.updates import decode_update
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


@contextmanager
def timed_progress(what: str, expected_s: float | None, every_s: float = 5.0) -> Iterator[None]:
    """A progress artifact for one long step that reports no steps of its own (a proof): every
    `every_s` its elapsed time against `expected_s` (the last runs' median; None: no estimate
    yet). It is updated from a thread that carries this context (the Prefect API settings).
    Best-effort: an API that does not answer costs the step its progress, never its result."""
    started = time.monotonic()
    stop = threading.Event()

    def show(share: float, description: str) -> None:
        try:
            update_progress_artifact(artifact_id, share, description=description)
        except httpx.HTTPError:  # the next update tries again
            pass

    def tick() -> None:
        while not stop.wait(every_s):
            elapsed = time.monotonic() - started
            show(min(99.0, 100.0 * elapsed / expected_s) if expected_s else 0.0, _timing(what, elapsed, expected_s))

    try:
        artifact_id = create_progress_artifact(0.0, description=_timing(what, 0.0, expected_s))
    except httpx.HTTPError as exc:
        get_run_logger().warning("no progress artifact for %s: %s", what, exc)
        yield
        return
    thread = threading.Thread(target=contextvars.copy_context().run, args=(tick,), daemon=True)
    thread.start()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    finally:
        stop.set()
        thread.join()
        elapsed = time.monotonic() - started
        expected = f" (expected {expected_s:.0f} s)" if expected_s else ""
        show(100.0 if outcome == "done" else 0.0, f"{what}: {outcome} in {elapsed:.0f} s{expected}")


def _timing(what: str, elapsed: float, expected_s: float | None) -> str:
    if expected_s is None:
        return f"{what}: {elapsed:.0f} s elapsed (the first proof of this circuit here: no estimate yet)"
    return f"{what}: {elapsed:.0f} s elapsed of about {expected_s:.0f} s (median of the last proofs here)"


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def cid_link(cid: str | None, *, short: bool = False) -> str:
    """A CID as a markdown link through the configured IPFS gateway, else as code; `short`: its
    ends only, for a table cell (the link and the trainer table keep it whole)."""
    if not cid:
        return "none"
    gateway = current_platform().settings.ipfs_gateway_url
    return _linked(_shortened(cid) if short else cid, f"{str(gateway).rstrip('/')}/ipfs/{cid}" if gateway else None)


def chain_link(value: str, kind: str = "tx", *, short: bool = False, text: str | None = None) -> str:
    """A transaction hash (`kind` tx) or an address as a link through the configured explorer,
    shown as `text`, else as the value (its ends only when `short`)."""
    explorer = current_platform().settings.explorer_url
    shown = text or (_shortened(value) if short else value)
    return _linked(shown, f"{str(explorer).rstrip('/')}/{kind}/{value}" if explorer else None, code=text is None)


def _shortened(value: str) -> str:
    return f"{value[:8]}…{value[-6:]}"


def _linked(text: str, url: str | None, *, code: bool = True) -> str:
    # the UI's markdown shows backticks inside a link's text literally: a link is plain text
    if url:
        return f"[{text}]({url})"
    return f"`{text}`" if code else text


def validation_accuracies(client, context) -> dict[int, float]:
    """Validation accuracy of every finalized round's aggregate, read back from the chain and the
    store (the settlement's plot and the market's rounds artifact)."""
    rounds = range(1, client.current_round() + 1)
    return {r: _accuracy_of(client.aggregate_of(r)[0], context) for r in rounds if client.round_state(r).finalized}


def _accuracy_of(cid: str, context) -> float:
    model = decode_update(current_platform().store.get(cid), context.spec.model)
    return accuracy(model, context.validation, context.spec.model)


def round_run_links(market: str) -> dict[int, str]:
    """The UI page of each round's latest aggregator run of `market`, by round (none without a UI)."""
    ui = PREFECT_UI_URL.value()
    if not ui:
        return {}
    tags = [f"market:{market.lower()}", "role:aggregator"]
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["fedmarket-round"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
            limit=200,
        )
    links = {}
    for run in sorted(runs, key=lambda r: r.created):  # the latest run of a round wins
        for tag in run.tags:
            if tag.startswith("round:"):
                round = int(tag.removeprefix("round:"))
                links[round] = f"[run]({ui.rstrip('/')}/runs/flow-run/{run.id})"
    return links


def publish_rounds(client, context, *, final_accuracy: float | None = None) -> None:
    """The market's rounds side by side, one artifact a new version of which each round and the
    settlement publish: status, accuracy, who was kept, flagged and excluded, gas, proof, the
    aggregate and the round's run. It reads chain, store and Prefect API again: where one is away,
    a warning, not a failed run (the round it reports on is already on chain)."""
    try:
        lines = _market_lines(client, context, final_accuracy)
    except (ChainUnavailableError, StoreUnavailableError, httpx.HTTPError) as exc:
        get_run_logger().warning("market artifact not updated: %s", exc)
        return
    create_markdown_artifact(key=artifact_key(client.address, "rounds"), markdown="\n".join(lines))


def _market_lines(client, context, final_accuracy: float | None) -> list[str]:
    runs = round_run_links(client.address)
    rounds = client.round_count()
    settled = f"; final test accuracy **{final_accuracy:.4f}**" if final_accuracy is not None else ""
    lines = [
        f"# Market `{client.address}`: its rounds side by side",
        "",
        f"- phase **{client.phase()}**, round {client.current_round()} of {rounds}{settled}",
        f"- task {cid_link(context.spec_cid)}: detector `{context.spec.detector}`, "
        f"aggregator `{context.spec.aggregator}`, aggregation `{context.spec.aggregation.value}`",
        "",
        "| round | status | accuracy (validation) | submitted | kept | flagged | excluded | gas | proof | aggregate | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in range(1, rounds + 1):
        state = client.round_state(r)
        submitted, excluded = client.submitted_mask(r).bit_count(), client.excluded_mask(r).bit_count()
        if not state.finalized:
            status = "open" if state.deadline else "not opened"
            cells = [r, status, "", submitted or "", "", "", excluded or "", "", "", "", runs.get(r, "")]
        else:
            kept = state.benign_mask.bit_count()
            _, tx = client.last_event("RoundFinalized", round=r)
            aggregate = client.aggregate_of(r)[0]
            accuracy_ = _accuracy_of(aggregate, context)
            cells = [r, "finalized", f"{accuracy_:.4f}", submitted, kept, max(0, submitted - kept - excluded)]
            cells += [excluded, chain_link(tx.tx_hash, text=f"{tx.gas_used:,}")]
            cells += ["verified" if state.verified else "not proven", cid_link(aggregate, short=True)]
            cells += [runs.get(r, "")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


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
            f"| {name} | {chain_link(tx, short=True)} | {_gas(report.gas_by_call.get(name))} |"
            for name, tx in report.tx_hashes.items()
        ],
        "",
        "| trainer | update CID | flagged because | DP epsilon spent (reported) |",
        "|---|---|---|---|",
        *[
            f"| {chain_link(t, 'address', short=True)} | {cid_link(report.submission_cids.get(t), short=True)} | {report.flag_reasons.get(t, '')} | {_epsilon(report.dp_epsilon, t)} |"
            for t in trainers
        ],
    ]
    create_markdown_artifact(key=artifact_key(market, "round", report.round, "summary"), markdown="\n".join(lines))


def _gas(used: int | None) -> str:
    return "" if used is None else f"{used:,}"


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
    # embedded in markdown, a data URI keeps the image in the artifact itself (the UI needs no
    # access to our store) without the image artifact's caption, which prints the whole URI
    create_markdown_artifact(
        key=artifact_key(market, "accuracy"),
        markdown=f"![Accuracy per round of {market}](data:image/png;base64,{base64.b64encode(png).decode()})\n\n"
        f"The PNG is also stored as {cid_link(plot_cid)}.",
        description=f"Accuracy per round of {market}",
    )
    lines = [
        f"# Market `{market}` settled",
        "",
        f"- final test accuracy: **{report.final_accuracy:.4f}** ({report.accuracy_bps} bps); reward pool {eth(report.reward_pool_wei)} ETH",
        f"- settle transaction: {chain_link(report.tx_hash)} ({report.gas_used:,} gas)",
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
        *[f"| {chain_link(p.account, 'address', short=True)} | {p.role} | {eth(p.wei)} |" for p in report.payouts],
    ]
    create_markdown_artifact(key=artifact_key(market, "summary"), markdown="\n".join(lines))


def publish_audit(report: AuditReport) -> None:
    verdict = "passes" if report.passed else "FAILS"
    create_table_artifact(
        key=artifact_key(report.market, "audit"),
        table=[check.model_dump() for check in report.checks],
        description=f"Audit of market {report.market} ({report.phase}): {verdict}",
    )
