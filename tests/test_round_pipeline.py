"""The aggregator's fetch step on bad submissions: each bad trainer is named with
the reason, the good updates still come through, and nothing on chain or in the store changes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save

from fedmarket.commitments import commit
from fedmarket.crypto import Envelope, SealContext, key_commitment, seal
from fedmarket.errors import StoreUnavailableError
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import encode_update
from fedmarket_schemas.market import ModelConfig, UpdateBounds
from fedmarket_schemas.rounds import ExclusionReason as R
from fedmarket_schemas.rounds import OutlierReport
from fedmarket_tasks.fetch import fetch_updates
from tests.helpers import create_market, snapshot

MODEL = ModelConfig()


def sealed_for(platform, market, trainer, round, plaintext):
    context = SealContext(platform.chain.chain_id, market.address, round, trainer.address)
    return seal(plaintext, sender=trainer.box_key, recipient=market.aggregator_key(), context=context)


def fetch(market, aggregator):
    start = np.zeros(parameter_count(MODEL))
    return fetch_updates.fn(market.address, aggregator.address, 1, MODEL, UpdateBounds(), start, key="unused")


def test_bad_submissions_are_rejected_by_name(platform):
    """Each unusable submission is named with its reason code and, once its envelope's key could be
    derived, that key: the evidence an exclusion publishes."""
    market, _, aggregator, members, _ = create_market(platform, trainers=10, rounds=2)
    market.open_round(aggregator.account, str(platform.store.put(b"global")), commit(b"global"))
    good = encode_update(np.zeros(parameter_count(MODEL)), MODEL)
    nan_weight = torch.zeros(10, 64)
    nan_weight[0, 0] = float("nan")
    nan_update = save({"0.weight": nan_weight, "0.bias": torch.zeros(10)})
    wrong_shape = save({"0.weight": torch.zeros(10, 32), "0.bias": torch.zeros(10)})
    huge = np.zeros(parameter_count(MODEL))
    huge[7] = 1e8  # finite: it passes the finiteness check, and would blind the distance rules
    huge = encode_update(huge, MODEL)
    far = encode_update(np.full(parameter_count(MODEL), 5.0), MODEL)  # every entry small, the update huge
    first = sealed_for(platform, market, members[0], 1, good)

    plan = {
        0: ("ok", first, commit(good)),
        1: ("moved", sealed_for(platform, market, members[1], 2, good), commit(good)),  # sealed for round 2
        2: ("nan", sealed_for(platform, market, members[2], 1, nan_update), commit(nan_update)),
        3: ("shape", sealed_for(platform, market, members[3], 1, wrong_shape), commit(wrong_shape)),
        4: ("commitment", sealed_for(platform, market, members[4], 1, good), "0x" + "0b" * 32),
        5: ("tampered", sealed_for(platform, market, members[5], 1, good), commit(good)),
        6: ("huge", sealed_for(platform, market, members[6], 1, huge), commit(huge)),
        7: ("far", sealed_for(platform, market, members[7], 1, far), commit(far)),
        8: ("garbage", b"\x02" + bytes(range(200)), commit(good)),  # a v2 byte, then nothing that opens
        9: ("replay", first, commit(good)),  # trainer 0's bytes, submitted again
    }
    for i, (_, envelope, commitment) in plan.items():
        cid = platform.store.put(envelope)
        market.submit(members[i].account, 1, str(cid), commitment)
        if plan[i][0] == "tampered":
            platform.store.path_of(cid).write_bytes(envelope[:-1] + bytes([envelope[-1] ^ 1]))

    before = snapshot(market)
    models = fetch(market, aggregator)
    assert snapshot(market) == before

    assert models.trainers == [members[0].address]
    assert set(models.rejected) == {m.address for m in members[1:]}
    assert models.matrix.shape == (1, parameter_count(MODEL))
    assert np.array_equal(models.matrix[0], np.zeros(parameter_count(MODEL)))  # rows decoded in place, kept exact
    rejected = {members.index(next(m for m in members if m.address == t)): r for t, r in models.rejected.items()}
    assert {i: r.reason for i, r in rejected.items()} == {
        1: R.DOES_NOT_OPEN,
        2: R.MALFORMED_UPDATE,
        3: R.MALFORMED_UPDATE,
        4: R.COMMITMENT_MISMATCH,
        5: R.UNAVAILABLE,
        6: R.MALFORMED_UPDATE,
        7: R.MALFORMED_UPDATE,
        8: R.KEY_MISMATCH,
        9: R.REPLAYED,
    }
    assert "round 1" in rejected[1].detail
    assert "NonFiniteUpdateError" in rejected[2].detail
    assert "MalformedUpdateError" in rejected[3].detail and "shape" in rejected[3].detail
    assert "commitment" in rejected[4].detail
    assert "CIDMismatchError" in rejected[5].detail
    assert "UpdateOutOfBoundsError" in rejected[6].detail and "1e+08" in rejected[6].detail
    assert "UpdateOutOfBoundsError" in rejected[7].detail and "norm" in rejected[7].detail
    assert members[0].address in rejected[9].detail and "round 1" in rejected[9].detail
    # the evidence: each keyed reason carries the key its envelope's header commits to
    for i, r in rejected.items():
        assert (r.key is not None) == r.reason.keyed
        if r.reason.keyed and i != 8:
            assert key_commitment(bytes.fromhex(r.key[2:])) == Envelope.parse(plan[i][1]).key_commitment
    # garbage whose header commits to no key the aggregator can derive: the key it derived
    assert key_commitment(bytes.fromhex(rejected[8].key[2:])) != Envelope.parse(plan[8][1]).key_commitment


def test_a_store_outage_mid_fetch_is_nobody_s_fault(platform, monkeypatch):
    """The store going away after the first submission was read fails the step, without waiting
    on a read of every other submission; it never marks the trainers whose bytes it could not
    read as rejected."""
    import fedmarket_tasks.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "THREADS", 2)
    market, _, aggregator, members, _ = create_market(platform, trainers=10, rounds=1)
    market.open_round(aggregator.account, str(platform.store.put(b"global")), commit(b"global"))
    good = encode_update(np.zeros(parameter_count(MODEL)), MODEL)
    for m in members:
        market.submit(m.account, 1, str(platform.store.put(sealed_for(platform, market, m, 1, good))), commit(good))
    reads = []
    real_get = platform.store._get_block

    def going_away(cid):
        reads.append(cid)
        if len(reads) > 1:
            time.sleep(0.2)  # a read that times out
            raise StoreUnavailableError("the store went away")
        return real_get(cid)

    monkeypatch.setattr(platform.store, "_get_block", going_away)
    with pytest.raises(StoreUnavailableError):
        fetch(market, aggregator)
    assert len(reads) <= 1 + 2 * 2  # the first, and what each thread had started by then
    monkeypatch.setattr(platform.store, "_get_block", real_get)  # back
    models = fetch(market, aggregator)
    assert models.rejected == {} and len(models.trainers) == 10


@pytest.mark.parametrize("threads", [1, 3])
def test_each_update_is_checked_before_its_thread_reads_another(platform, monkeypatch, threads):
    """The fetch step takes one submission from store to its row of the matrix before the same
    thread reads the next, so the round never holds more opened updates than threads beside the
    matrix; the kept rows come out in chain order whatever the threads' order. And the aggregate
    step hands the rule the round's matrix itself when every row is kept."""
    import fedmarket_tasks.aggregate as aggregate_module
    import fedmarket_tasks.fetch as fetch_module

    market, _, aggregator, members, _ = create_market(platform, trainers=4, rounds=1)
    market.open_round(aggregator.account, str(platform.store.put(b"global")), commit(b"global"))
    for k, m in enumerate(members):
        update = encode_update(np.full(parameter_count(MODEL), 0.01 * k), MODEL)
        sealed = str(platform.store.put(sealed_for(platform, market, m, 1, update)))
        market.submit(m.account, 1, sealed, commit(update) if k else "0x" + "0b" * 32)  # the first: not its own
    in_flight, most, lock = [0], [0], threading.Lock()
    real_get, real_recheck = platform.store.get, fetch_module.recheck

    def read(cid):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        return real_get(cid)

    def checked(*args, **kwargs):
        try:
            return real_recheck(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1  # its bytes are let go

    monkeypatch.setattr(fetch_module, "THREADS", threads)
    monkeypatch.setattr(platform.store, "get", read)
    monkeypatch.setattr(fetch_module, "recheck", checked)
    models = fetch(market, aggregator)
    assert most[0] <= threads
    assert models.trainers == [m.address for m in members[1:]] and models.indices == [1, 2, 3]
    assert [row[0] for row in models.matrix] == pytest.approx([0.01, 0.02, 0.03])
    assert models.rejected[members[0].address].reason == R.COMMITMENT_MISMATCH

    given = []
    monkeypatch.setattr(aggregate_module.AGGREGATORS, "get", lambda rule: lambda x: given.append(x) or x.mean(axis=0))
    everyone = OutlierReport(round=1, detector="none", kept=models.trainers, flagged=[], reasons={})
    aggregate_module.aggregate.fn(models, everyone, "mean", models.matrix[0], key="unused")
    assert given[0] is models.matrix
