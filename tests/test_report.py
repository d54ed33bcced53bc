"""The progress artifact of a long step that reports no steps of its own (a proof): elapsed time
against the time the last runs took, updated while the step runs, and its outcome at the end."""

from __future__ import annotations

import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from fedmarket.zk.ezkl.cache import expected_prove_s, record_prove_time
from fedmarket_tasks.report import timed_progress

MIDWAY = {}  # flow run id -> the artifact as the step's last moment saw it


@flow
def long_step(seconds: float, expected_s: float | None, fail: bool = False) -> str:
    from prefect.runtime import flow_run

    with timed_progress("proof", expected_s, every_s=0.05):
        time.sleep(seconds)
        MIDWAY[flow_run.id] = progress_of(flow_run.id)
        if fail:
            raise RuntimeError("the prover died")
    return flow_run.id


def progress_of(run_id: str):
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    (artifact,) = [a for a in artifacts if a.type == "progress"]  # a failed run also stores its result
    return artifact


def test_a_finished_step_shows_done_with_its_time_against_the_expected_one():
    run_id = long_step(0.4, 2.0)
    midway = MIDWAY[run_id]
    assert 10.0 <= midway.data < 100.0 and midway.description.endswith("of about 2 s (median of the last proofs here)")
    artifact = progress_of(run_id)
    assert artifact.data == 100.0
    assert artifact.description == "proof: done in 0 s (expected 2 s)"


def test_a_failed_step_says_so_and_a_first_run_has_no_estimate():
    captured = {}

    @flow
    def failing() -> None:
        from prefect.runtime import flow_run

        captured["id"] = flow_run.id
        long_step.fn(0.3, None, fail=True)

    with pytest.raises(RuntimeError):
        failing()
    assert "no estimate yet" in MIDWAY[captured["id"]].description
    artifact = progress_of(captured["id"])
    assert artifact.data == 0.0 and artifact.description == "proof: failed in 0 s"


def test_the_expected_time_is_the_median_of_the_last_proofs(tmp_path):
    assert expected_prove_s(tmp_path) is None
    for seconds in [50.0, 10.0, 12.0, 11.0, 13.0, 14.0]:
        record_prove_time(tmp_path, seconds)
    assert expected_prove_s(tmp_path) == 12.0  # the first of six fell out: median of 10..14


@pytest.mark.parametrize("failing", ["create_progress_artifact", "update_progress_artifact"])
def test_a_prefect_api_that_does_not_answer_costs_the_step_its_progress_not_its_result(monkeypatch, failing):
    import httpx

    import fedmarket_tasks.report as report

    def away(*args, **kwargs):
        raise httpx.ConnectError("the Prefect server is restarting")

    monkeypatch.setattr(report, failing, away)

    @flow
    def proving() -> str:
        with timed_progress("proof", 1.0, every_s=0.05):
            time.sleep(0.2)
            return "the proof"

    assert proving() == "the proof"


def test_an_accuracy_memo_that_cannot_be_written_costs_evaluations_not_the_run(platform, monkeypatch, caplog):
    """The memo's directory cannot be made (a file is in its place): the accuracies are still
    given, and the next memo evaluates again."""
    from types import SimpleNamespace

    from fedmarket_tasks.report import AccuracyMemo

    (platform.settings.state_dir / "accuracy").parent.mkdir(parents=True, exist_ok=True)
    (platform.settings.state_dir / "accuracy").write_text("not a directory")
    context = SimpleNamespace(spec_cid="bafyspec", data_cid="bafydata", split_seed=7)
    evaluated = []
    monkeypatch.setattr(AccuracyMemo, "_evaluate", lambda self, cid: evaluated.append(cid) or 0.5)
    assert AccuracyMemo(context).of(["bafyone"], {"bafytwo": 0.75}) == {"bafyone": 0.5}
    assert AccuracyMemo(context).of(["bafyone", "bafytwo"]) == {"bafyone": 0.5, "bafytwo": 0.5}
    assert evaluated == ["bafyone", "bafyone", "bafytwo"]
    assert "accuracy memo" in caplog.text and "not written" in caplog.text
