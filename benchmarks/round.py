"""`fedmarket bench round`: the whole round flow at market scale against its floor.

One market per (L, parameters): an MLP on digits whose hidden width gives about the asked number
of parameters, L trainers registered on the chain the settings name (the in-process EVM by
default), each submitting a real sealed update (encoded, sealed to the aggregator, stored by
CID, committed). In the same process it then measures:

- the floor: reading the L ciphertexts from the store and opening them once (the chain reads
  that name them are not timed: on the in-process EVM they alone cost more than the floor);
- the round flow (fetch, open, validate, detect, aggregate, evaluate, store, finalize) through
  Prefect with its persisted, sealed results, and each of its task runs as Prefect recorded it;
  the flow call's wall time, and apart from it the run's own duration as Prefect recorded it
  (`run_s`): the call also waits for the engine's teardown (with flow heartbeats on, up to a
  second: cli/_common.py `short_runs`);
- the flow's peak resident memory (sampled from /proc every 10 ms; Linux only), absolute and
  above the process's before the flow, and the bytes it wrote to disk (/proc/self/io).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from fedmarket.chain import FactoryClient
from fedmarket.commitments import commit
from fedmarket.context import Platform, use_platform
from fedmarket.crypto import Envelope, SealContext, open_with_key, submission_key
from fedmarket.errors import ConfigError
from fedmarket.ml.data import encode_dataset, load_digits_dataset, owner_split
from fedmarket.ml.models import parameter_count
from fedmarket.ml.training import initial_model
from fedmarket.settings import load_settings
from fedmarket.simulation.enrol import enrol
from fedmarket_benchmarks.gas import funded_party
from fedmarket_flows.market import open_next_round
from fedmarket_flows.round import round_flow
from fedmarket_schemas.market import MarketSpec, ModelConfig, ModelKind, RewardSchedule, TaskSpec
from fedmarket_tasks.trainer import seal_and_store

TARGET_RATIO = 3.0  # the round flow within 3x its floor (issue 21)


class RoundRow(BaseModel):
    trainers: int
    params: int
    step: str  # a task run's name without its round, or "round" for the whole flow
    seconds: float
    floor_s: float
    ratio: float
    calls: int = 1
    run_s: float | None = None  # "round" rows only: Running to Completed, as Prefect recorded it
    peak_rss_gb: float | None = None
    peak_added_gb: float | None = None
    matrix_gb: float | None = None  # L x d float64
    disk_written_mb: float | None = None
    ciphertext_mb: float | None = None


def mlp_with(params: int) -> ModelConfig:
    """The digits MLP (64 -> hidden -> 10) whose parameter count is nearest `params`."""
    hidden = max(1, round((params - 10) / 75))
    return ModelConfig(kind=ModelKind.mlp, hidden=hidden)


def run(trainers: list[int], params: list[int]) -> list[RoundRow]:
    rows: list[RoundRow] = []
    for n in trainers:
        for d in params:
            rows += measure(n, d)
    return rows


def measure(trainers: int, params: int) -> list[RoundRow]:
    if not 1 <= trainers <= 128:
        raise ConfigError(f"--trainers: a market holds 1 to 128 trainers, got {trainers}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings().model_copy(
            update={"store_dir": root / "blocks", "results_dir": root / "results", "state_dir": root / "state"}
        )
        platform = Platform.from_settings(settings)
        with use_platform(platform):
            return _measure(platform, trainers, params)


def _measure(platform: Platform, trainers: int, params: int) -> list[RoundRow]:
    store = platform.store
    task = TaskSpec(model=mlp_with(params))
    d = parameter_count(task.model)
    owner, aggregator = funded_party(platform, "owner"), funded_party(platform, "aggregator")
    members = [funded_party(platform, "trainer", i) for i in range(trainers)]
    _, owner_data = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=1)
    data = encode_dataset(owner_data)
    spec = MarketSpec(
        task_cid=str(store.put(task.model_dump_json().encode())),
        data_cid=str(store.put(data)),
        data_commitment=commit(data),
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=trainers,
        rounds=1,
        participation_reward_wei=10**15,
        schedule=RewardSchedule(thresholds_bps=(5000,), pools_wei=(10**17,)),
    )
    factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    market, _ = factory.create_market(owner.account, spec, spec.max_payout())
    enrol(market, members, str(store.put(b'{"summary": "bench"}')))
    open_next_round(market.address, aggregator.address)
    start = initial_model(task.model, seed=task.init_seed)
    rng = np.random.default_rng(trainers + d)
    for t in members:
        local = start + rng.normal(0, 0.01, size=d)
        cid, commitment = seal_and_store(market.address, t.address, 1, local, task)
        market.submit(t.account, 1, cid, commitment)

    floor_s, ciphertext_bytes = _floor(platform, market, aggregator)
    rss_before, written_before = _rss(), _written()
    with _PeakSampler() as peak:
        began = time.perf_counter()
        state = round_flow(market.address, 1, aggregator.address, return_state=True)
        seconds = time.perf_counter() - began
    state.result()  # raises if the round failed
    written = _written() - written_before

    def row(step: str, s: float, calls: int = 1, **extra) -> RoundRow:
        return RoundRow(
            trainers=trainers, params=d, step=step, seconds=s, floor_s=floor_s, ratio=s / floor_s, calls=calls, **extra
        )

    times, run_s = _run_times(state.state_details.flow_run_id)
    steps = [row(name, s, calls) for name, (s, calls) in times.items()]
    whole = row(
        "round",
        seconds,
        run_s=run_s,
        peak_rss_gb=peak.peak / 1e9,
        peak_added_gb=(peak.peak - rss_before) / 1e9,
        matrix_gb=trainers * d * 8 / 1e9,
        disk_written_mb=written / 1e6,
        ciphertext_mb=ciphertext_bytes / 1e6,
    )
    return [whole, *steps]


def _floor(platform: Platform, market, aggregator) -> tuple[float, int]:
    """Seconds to read every submission's ciphertext from the store and open it once (the
    submissions and the trainers' keys are read from the chain first, untimed); the
    ciphertexts' bytes."""
    subs = [(s, market.encryption_key(s.trainer)) for s in market.submissions(1)]
    total, began = 0, time.perf_counter()
    for sub, sender in subs:
        sealed = platform.store.get(sub.cid)
        total += len(sealed)
        envelope = Envelope.parse(sealed)
        key = submission_key(envelope, recipient=aggregator.box_key, sender=sender)
        open_with_key(envelope, key, SealContext(platform.chain.chain_id, market.address, 1, sub.trainer))
    return time.perf_counter() - began, total


def _run_times(flow_run_id, wait_s: float = 30.0) -> tuple[dict[str, tuple[float, int]], float | None]:
    """Each task run's wall time as Prefect recorded it (start to end, result persisted),
    summed by name without the round, and the flow run's own; waits for the records' end times
    to arrive."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            flow_run = client.read_flow_run(flow_run_id)
            ended = flow_run.end_time is not None and all(r.end_time is not None for r in runs)
            if ended or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    times: dict[str, tuple[float, int]] = {}
    for r in sorted(runs, key=lambda r: r.start_time or r.expected_start_time):
        if r.start_time is None or r.end_time is None:
            continue
        name = re.sub(r"-r\d+$", "", r.name)
        s, n = times.get(name, (0.0, 0))
        times[name] = (s + (r.end_time - r.start_time).total_seconds(), n + 1)
    recorded = flow_run.start_time is not None and flow_run.end_time is not None
    return times, (flow_run.end_time - flow_run.start_time).total_seconds() if recorded else None


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


class _PeakSampler:
    """The process's highest resident set size while the block runs."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
