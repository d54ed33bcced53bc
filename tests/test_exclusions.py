"""Exclusions the chain cannot judge, judged by the audit: an aggregator that excludes honest
trainers with false evidence is named, trainer and round, while a justified exclusion passes; a
ledger that drops an exclusion's evidence fails; a rerun keeps out what the chain already
excludes. (A demo with a garbage trainer: tests/test_cli.py.)"""

from __future__ import annotations

import numpy as np

from fedmarket.audit import audit_market
from fedmarket.chain import MarketLedger
from fedmarket.commitments import commit
from fedmarket.crypto import Envelope, submission_key
from fedmarket.ml.data import Dataset, encode_dataset
from fedmarket.ml.training import initial_model
from fedmarket.ml.updates import encode_update
from fedmarket_flows.market import open_next_round
from fedmarket_flows.round import round_flow
from fedmarket_schemas.market import DataSchema, ModelConfig, TaskSpec
from fedmarket_schemas.rounds import ExclusionReason, Rejection
from fedmarket_tasks.fetch import fetch_updates
from fedmarket_tasks.trainer import seal_and_store
from tests.helpers import create_market

TASK = TaskSpec(
    name="tiny", model=ModelConfig(in_features=3, classes=2), data_schema=DataSchema(feature_count=3, labels=(0, 1))
)


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

    start_model = initial_model(TASK.model, seed=TASK.init_seed)
    models = fetch_updates.fn(
        market.address, aggregator.address, 1, TASK.model, TASK.update_bounds, start_model, key="unused"
    )
    assert set(models.rejected) == {members[3].address}
    honest = market.submissions(1)[0]
    envelope = Envelope.parse(platform.store.get(honest.cid))
    honest_key = "0x" + submission_key(envelope, recipient=aggregator.box_key, sender=members[0].public_box_key).hex()
    market.exclude(
        aggregator.account,
        1,
        {
            0: Rejection(reason=ExclusionReason.DOES_NOT_OPEN, detail="false", key=honest_key),  # its real key
            1: Rejection(reason=ExclusionReason.MALFORMED_UPDATE, detail="false", key="0x" + "5a" * 32),  # made up
            2: Rejection(reason=ExclusionReason.REPLAYED, detail="false"),  # a CID never submitted before
            3: models.rejected[members[3].address],  # justified, with its evidence
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


def test_a_rerun_keeps_out_what_the_chain_already_excludes(platform):
    """A rerun that lost its cached steps may find usable an update an earlier run excluded (its
    bytes were uploaded late): the chain's exclusion stands, and the round completes without it
    instead of stopping on the disagreement."""
    rng = np.random.default_rng(1)
    features = rng.integers(0, 17, size=(40, 3)).astype(np.float32)
    owner = encode_dataset(Dataset(features, (features[:, 0] > 8).astype(np.int64)))
    market, _, aggregator, members, _ = create_market(
        platform,
        trainers=3,
        rounds=1,
        task_cid=str(platform.store.put(TASK.model_dump_json().encode())),
        data_cid=str(platform.store.put(owner)),
        data_commitment=commit(owner),
    )
    open_next_round(market.address, aggregator.address)
    for member in members:
        cid, commitment = seal_and_store.fn(market.address, member.address, 1, rng.normal(0, 0.1, 8), TASK)
        market.submit(member.account, 1, cid, commitment)
    earlier = Rejection(reason=ExclusionReason.UNAVAILABLE, detail="its bytes could not be read")
    landed = market.exclude(aggregator.account, 1, {1: earlier})

    report = round_flow(market.address, 1, aggregator.address)
    assert report.flag_reasons[members[1].address].startswith("excluded: Unavailable")
    assert report.benign_mask >> 1 & 1 == 0 and market.round_state(1).finalized
    assert report.tx_hashes["exclude"] == landed.tx_hash  # nothing sent twice
