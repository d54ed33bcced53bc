"""Exclusions the chain cannot judge, judged by the audit: an aggregator that excludes honest
trainers with false evidence is named, trainer and round, while a justified exclusion passes; a
ledger that drops an exclusion's evidence fails; a demo trainer uploading garbage is excluded
every round and paid nothing."""

from __future__ import annotations

import numpy as np

from fedmarket.audit import audit_market
from fedmarket.chain import MarketLedger
from fedmarket.commitments import commit
from fedmarket.ml.training import initial_model
from fedmarket.ml.updates import encode_update
from fedmarket_flows.demo import DemoConfig, demo_flow
from fedmarket_schemas.market import ModelConfig, TaskSpec
from fedmarket_schemas.rounds import ExclusionReason, Rejection
from fedmarket_tasks.fetch import fetch_submissions
from fedmarket_tasks.trainer import seal_and_store
from tests.helpers import create_market

TASK = TaskSpec(name="tiny", model=ModelConfig(in_features=3, classes=2))


def test_false_exclusions_are_named_by_the_audit_and_a_justified_one_passes(platform):
    market, _, aggregator, members, _ = create_market(
        platform, trainers=4, rounds=1, task_cid=str(platform.store.put(TASK.model_dump_json().encode()))
    )
    start = encode_update(initial_model(TASK.model, seed=TASK.init_seed), TASK.model)
    market.open_round(aggregator.account, str(platform.store.put(start)), commit(start))
    rng = np.random.default_rng(0)
    for i, member in enumerate(members):
        cid, commitment = seal_and_store.fn(market.address, member.address, 1, rng.normal(0, 0.1, 8), TASK)
        if i == 3:  # the one bad submission: its ciphertext does not open
            raw = bytearray(platform.store.get(cid))
            raw[-1] ^= 1
            cid = str(platform.store.put(bytes(raw)))
        market.submit(member.account, 1, cid, commitment)

    opened = fetch_submissions.fn(market.address, aggregator.address, 1, key="unused", model=TASK.model)
    assert set(opened.rejected) == {members[3].address}
    honest_key = opened.envelope_keys[members[0].address]
    market.exclude(
        aggregator.account,
        1,
        {
            0: Rejection(reason=ExclusionReason.DOES_NOT_OPEN, detail="false", key=honest_key),  # its real key
            1: Rejection(reason=ExclusionReason.MALFORMED_UPDATE, detail="false", key="0x" + "5a" * 32),  # made up
            2: Rejection(reason=ExclusionReason.REPLAYED, detail="false"),  # a CID never submitted before
            3: opened.rejected[members[3].address],  # justified, with its evidence
        },
    )

    check = next(c for c in audit_market(market, platform.store).checks if c.name == "exclusions")
    assert check.status == "fail"
    failures = check.detail.split("; ")
    assert len(failures) == 3
    assert failures[0].startswith(f"round 1: {members[0].address} excluded as DoesNotOpen")
    assert "passes every check: excluded without cause" in failures[0]
    assert failures[1].startswith(f"round 1: {members[1].address} excluded as MalformedUpdate")
    assert "not the one the trainer sealed with" in failures[1]
    assert failures[2].startswith(f"round 1: {members[2].address} excluded as Replayed")
    assert members[3].address not in check.detail

    # the justified exclusion alone passes; without its evidence it fails
    ledger = MarketLedger.rebuild(market)
    for trainer in (m.address for m in members[:3]):
        del ledger.rounds[1].exclusions[trainer]
    check = next(c for c in audit_market(market, platform.store, ledger=ledger).checks if c.name == "exclusions")
    assert check.status == "pass", check.detail
    ledger.rounds[1].exclusions[members[3].address] = (ExclusionReason.DOES_NOT_OPEN.code, None)
    check = next(c for c in audit_market(market, platform.store, ledger=ledger).checks if c.name == "exclusions")
    assert check.status == "fail" and members[3].address in check.detail


def test_a_demo_garbage_trainer_is_excluded_every_round_and_paid_nothing(platform):
    """`fedmarket demo --attack garbage`: the market settles, the garbage trainer is excluded in
    every round with its evidence, earns nothing, and the market passes an audit."""
    report = demo_flow(DemoConfig(trainers=4, malicious=1, rounds=2, attacks=("garbage",), seed=3))
    (garbage,) = report.attackers
    assert report.attacks == {garbage: "garbage"}
    market = platform.market(report.market)
    index = market.trainers().index(garbage)
    for r in report.rounds:
        assert garbage in r.flagged and r.flag_reasons[garbage].startswith("excluded: DoesNotOpen")
        assert market.excluded_mask(r.round) == 1 << index
    assert report.payouts[garbage] == 0
    assert all(report.payouts[t] > 0 for t in market.trainers() if t != garbage)
    assert "exclude" in report.gas and market.phase() == "Settled"
    audited = audit_market(market, platform.store)
    assert audited.passed, audited.failures()
    assert {c.name: c.status for c in audited.checks}["exclusions"] == "pass"
