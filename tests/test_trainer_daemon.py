"""The trainer daemon (`fedmarket trainer run`) outlives what it cannot reach: a Prefect server
that answers 503 (its SQLite database locked by many concurrent clients), a node or a store that
is away. It stops on a decided failure."""

from __future__ import annotations

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError

import fedmarket_flows.trainer as daemon
from fedmarket.chain import MarketClient
from fedmarket.context import use_platform
from fedmarket.errors import ChainUnavailableError, ContractRevertError, StoreUnavailableError
from fedmarket_tasks.common import transient
from tests.helpers import party


def prefect_error(status: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/flow_runs/")
    response = httpx.Response(status, request=request, json={"exception_message": "Service Unavailable"})
    return PrefectHTTPStatusError("server error", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (prefect_error(503), True),
        (prefect_error(500), True),
        (prefect_error(404), False),
        (prefect_error(422), False),
        (httpx.ConnectError("refused"), True),
        (ChainUnavailableError("node away"), True),
        (StoreUnavailableError("store away"), True),
        (ContractRevertError("submit", "RoundNotOpen", {"round": 2}), False),
        (ValueError("bad"), False),
    ],
)
def test_what_counts_as_transient(exc, expected):
    assert transient(exc) is expected


@pytest.fixture
def daemon_on(platform, monkeypatch):
    """The daemon's loop on `platform` with its own trainer key, its task and data stubbed: the
    market's phase answers from `phases`, one per poll."""
    platform.own = party(platform, "trainer")
    monkeypatch.setattr(daemon, "task_of", lambda market: type("Task", (), {"aggregation": None})())
    monkeypatch.setattr(daemon, "load_local_data", lambda path, spec: None)
    monkeypatch.setattr(MarketClient, "owed", lambda self, who: 0)
    phases: list = []

    def phase(self):
        answer = phases.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(MarketClient, "phase", phase)
    with use_platform(platform):
        yield phases


def test_a_prefect_server_that_answers_503_is_retried(daemon_on, tmp_path):
    daemon_on += [prefect_error(503), ChainUnavailableError("node restarting"), "Settled"]
    lines = []
    phase = daemon.follow_market("0x" + "11" * 20, tmp_path, poll_s=0.01, log=lines.append)
    assert phase == "Settled" and daemon_on == []
    assert [line.split(",")[0] for line in lines] == ["PrefectHTTPStatusError", "ChainUnavailableError"]


def test_a_decided_failure_stops_the_daemon(daemon_on, tmp_path):
    daemon_on += [prefect_error(422), "Settled"]
    with pytest.raises(PrefectHTTPStatusError):
        daemon.follow_market("0x" + "11" * 20, tmp_path, poll_s=0.01, log=lambda line: None)
    assert daemon_on == ["Settled"]


def test_a_run_the_prefect_api_cannot_tag_still_runs(platform, monkeypatch):
    """Tags help people filter runs; a Prefect server that answers 503 to the tagging does not
    fail the run (a round's run would otherwise be lost to a cosmetic step)."""
    from prefect import flow

    import fedmarket_tasks.report as report

    class Unreachable:
        def __enter__(self):
            raise prefect_error(503)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(report, "get_client", lambda sync_client: Unreachable())

    @flow
    def tagged() -> str:
        report.tag_run("aggregator", "0x" + "11" * 20, 1)
        return "ran"

    with use_platform(platform):
        assert tagged() == "ran"
