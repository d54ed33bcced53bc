"""What the Prefect UI shows of every round and market: a table of trainers (submitted, flagged
and why, contribution, payout), a markdown summary that lists every CID and transaction hash, the
market's rounds side by side, an accuracy-per-round plot, and progress artifacts during long
steps (a proof's with its elapsed and expected time)."""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import io
import itertools
import json
import os
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
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from prefect.settings import PREFECT_UI_URL

from fedmarket.context import current_platform
from fedmarket.errors import ChainUnavailableError, StoreUnavailableError
from fedmarket.ml.training import accuracy
from fedmarket.ml.updates import decode_update
from fedmarket.units import eth
from fedmarket_schemas.audit import AuditReport
from fedmarket_schemas.rounds import OutlierReport, RoundReport
from fedmarket_schemas.settlement import SettlementReport


def _logger():
    """The run's logger (its lines show on the run's page), or the module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("fedmarket.report")


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
    store, or the aggregator's memo of them (the settlement's plot)."""
    numbers = list(range(1, client.current_round() + 1))
    finalized = [r for r, state in zip(numbers, client.round_states(numbers)) if state.finalized]
    aggregates = client.finalized_rounds()
    accuracies = AccuracyMemo(context).of([aggregates[r][0] for r in finalized])
    return {r: accuracies[aggregates[r][0]] for r in finalized}


class AccuracyMemo:
    """Validation accuracy of a market's aggregates, by CID, in a small JSON file in the
    aggregator's state directory: an aggregate's accuracy on the market's validation split never
    changes, so the market artifact, republished every round, evaluates each aggregate once and
    not once a round. Keyed by the task, the owner's data and the split seed; a file that is
    missing or unreadable only means evaluating again."""

    def __init__(self, context):
        key = hashlib.sha256(f"{context.spec_cid}/{context.data_cid}/{context.split_seed}".encode()).hexdigest()
        self.path = current_platform().settings.state_dir / "accuracy" / f"{key[:32]}.json"
        self.context = context
        try:
            self.known: dict[str, float] = {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.known = {}

    def of(self, cids: list[str], new: dict[str, float] | None = None) -> dict[str, float]:
        """Accuracy of each of `cids`; `new`: accuracies the caller has just measured."""
        missing = {cid for cid in cids if cid not in self.known and cid not in (new or {})}
        found = {**(new or {}), **{cid: self._evaluate(cid) for cid in sorted(missing)}}
        if set(found) - set(self.known):
            self.known.update(found)
            self._save()
        return {cid: self.known[cid] for cid in cids}

    def _save(self) -> None:
        """Atomically (a reader sees the old memo or the new one); a memo that cannot be written
        costs evaluations later, never the run that measured them."""
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(self.known))
            partial.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            _logger().warning("accuracy memo %s not written: %s", self.path, exc)

    def _evaluate(self, cid: str) -> float:
        spec = self.context.spec
        return accuracy(
            decode_update(current_platform().store.get(cid), spec.model), self.context.validation, spec.model
        )


RUN_PAGE = 200  # flow runs read a page at a time


def round_run_links(market: str) -> dict[int, str]:
    """The UI page of each round's latest aggregator run of `market`, by round (none without a UI):
    every run, newest first, page by page."""
    ui = PREFECT_UI_URL.value()
    if not ui:
        return {}
    tags = [f"market:{market.lower()}", "role:aggregator"]
    links: dict[int, str] = {}
    with get_client(sync_client=True) as prefect:
        for offset in itertools.count(0, RUN_PAGE):
            runs = prefect.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["fedmarket-round"])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=RUN_PAGE,
                offset=offset,
            )
            for run in runs:
                for tag in run.tags:
                    if tag.startswith("round:"):  # newest first: a round's latest run wins
                        links.setdefault(
                            int(tag.removeprefix("round:")), f"[run]({ui.rstrip('/')}/runs/flow-run/{run.id})"
                        )
            if len(runs) < RUN_PAGE:
                return links
    return links


def publish_rounds(
    client, context, *, final_accuracy: float | None = None, measured: dict[str, float] | None = None
) -> None:
    """The market's rounds side by side, one artifact a new version of which each round and the
    settlement publish: status, accuracy, who was kept, flagged and excluded, gas, proof, the
    aggregate and the round's run. `measured`: aggregate CID -> validation accuracy the caller
    has just computed. It reads chain, store and Prefect API again, in batches: where one is away,
    a warning, not a failed run (the round it reports on is already on chain)."""
    try:
        lines = _market_lines(client, context, final_accuracy, measured)
    except (ChainUnavailableError, StoreUnavailableError, httpx.HTTPError) as exc:
        get_run_logger().warning("market artifact not updated: %s", exc)
        return
    create_markdown_artifact(key=artifact_key(client.address, "rounds"), markdown="\n".join(lines))


def _market_lines(client, context, final_accuracy: float | None, measured: dict[str, float] | None) -> list[str]:
    runs = round_run_links(client.address)
    numbers = list(range(1, client.round_count() + 1))
    settled = f"; final test accuracy **{final_accuracy:.4f}**" if final_accuracy is not None else ""
    lines = [
        f"# Market `{client.address}`: its rounds side by side",
        "",
        f"- phase **{client.phase()}**, round {client.current_round()} of {len(numbers)}{settled}",
        f"- task {cid_link(context.spec_cid)}: detector `{context.spec.detector}`, "
        f"aggregator `{context.spec.aggregator}`, aggregation `{context.spec.aggregation.value}`",
        "",
        "| round | status | accuracy (validation) | submitted | kept | flagged | excluded | gas | proof | aggregate | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    states = client.round_states(numbers)
    submitted_masks, excluded_masks = client.masks("submittedMask", numbers), client.masks("excludedMask", numbers)
    finalized = {r: found for r, found in client.finalized_rounds().items() if states[r - 1].finalized}
    gas = {r: tx.gas_used for r, tx in zip(finalized, client.chain.receipts([tx for _, tx in finalized.values()]))}
    accuracies = AccuracyMemo(context).of([cid for cid, _ in finalized.values()], measured)
    for r, state, submitted_mask, excluded_mask in zip(numbers, states, submitted_masks, excluded_masks):
        submitted, excluded = submitted_mask.bit_count(), excluded_mask.bit_count()
        if r not in finalized:
            status = "open" if state.deadline else "not opened"
            cells = [r, status, "", submitted or "", "", "", excluded or "", "", "", "", runs.get(r, "")]
        else:
            aggregate, tx_hash = finalized[r]
            kept = state.benign_mask.bit_count()
            cells = [
                r,
                "finalized",
                f"{accuracies[aggregate]:.4f}",
                submitted,
                kept,
                max(0, submitted - kept - excluded),
            ]
            cells += [excluded, chain_link(tx_hash, text=f"{gas[r]:,}")]
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
