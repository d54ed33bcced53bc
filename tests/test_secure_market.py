"""A market in secure-aggregation mode, through the flows: trainers post keys, mask, reveal; the
aggregator excludes what cannot be counted, rebuilds the survivors' mean without opening one
update, pays by inclusion; the audit rebuilds every round from the chain and the store."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from fedmarket.audit import audit_market
from fedmarket.errors import ConfigError
from fedmarket.fixed_point import quantize
from fedmarket.ml.data import load_digits_dataset
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import decode_update
from fedmarket.secagg.onchain import board_of
from fedmarket_flows.market import market_flow
from fedmarket_flows.round import round_flow
from fedmarket_flows.trainer import secure_duties
from fedmarket_schemas.market import Aggregation, ModelKind, RewardSchedule, TaskSpec
from fedmarket_schemas.rounds import ExclusionReason, Rejection
from fedmarket_tasks.chain_ops import submit_update, withdraw
from fedmarket_tasks.owner import publish_market
from fedmarket_tasks.secure import mask_and_store
from fedmarket_tasks.store_ops import put_bytes
from tests.helpers import party


def publish(platform, trainers: int, rounds: int, data=None, **fields):
    """A secure market of `trainers`, every one registered and revealed: in Training. `data`: the
    owner's (default: 300 digits); `fields`: publish_market's other arguments."""
    owner, aggregator = party(platform, "owner"), party(platform, "aggregator")
    members = [party(platform, "trainer", i) for i in range(trainers)]
    market, _, _, task = publish_market(
        owner.address,
        data or load_digits_dataset().subset(np.arange(300)),
        ModelKind.lr,
        **fields,
        aggregation=Aggregation.secure,
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=trainers,
        rounds=rounds,
        participation_reward_wei=10**15,
        aggregator_fee_wei=10**16,
        schedule=RewardSchedule(thresholds_bps=(0,), pools_wei=(10**17,)),
    )
    summary = put_bytes(b'{"summary": "ok"}')
    for t in members:
        market.register(t.account, t.public_box_key, t.split_seed(market.address), summary)
    for t in members:  # the last reveal starts training
        market.reveal(t.account, t.split_seed(market.address))
    return market, owner, aggregator, members, task


def never_opened(monkeypatch):
    """The aggregator's steps that open sealed updates fail the test if a secure market calls them."""

    def refuse(*args, **kwargs):
        raise AssertionError("a secure market's aggregator opened an update")

    monkeypatch.setattr("fedmarket_flows.round.load_round", refuse)
    monkeypatch.setattr("fedmarket_flows.settlement.load_round", refuse)


def test_a_secure_market_counts_the_survivors_pays_by_inclusion_and_passes_its_audit(platform, monkeypatch):
    never_opened(monkeypatch)
    market, owner, aggregator, members, task = publish(platform, trainers=6, rounds=2)
    d = parameter_count(task.model)
    models = {r: quantize(np.random.default_rng(r).normal(0, 0.2, (6, d))) for r in (1, 2)}

    def play(round: int) -> None:
        for i, t in enumerate(members):
            if round == 1 and i == 4:
                continue  # drops out after the keys were dealt
            cid, commitment = mask_and_store(market.address, t.address, round, models[round][i], task)
            if round == 1 and i == 5:
                cid = put_bytes(b"not a masked model")  # the commitment names other bytes
            submit_update(market.address, t.address, round, cid, commitment)
        while platform.chain.now() <= market.round_state(round).deadline:  # the dropout's round ends
            platform.chain.advance_time(60)

    def duties(round: int | None = None) -> None:  # what each trainer daemon does between rounds
        for t in members:
            secure_duties(market.address, t.address)

    reports, settlement = market_flow(
        market.address, aggregator.address, play, poll_s=0.01, key_step=duties, reveal_step=duties
    )

    first, second = reports
    assert (first.benign_mask, second.benign_mask) == (0b001111, 0b111111)
    assert first.aggregation == "secure" and "MaskedMalformed" in first.flag_reasons[members[5].address]
    assert members[4].address not in first.submitted
    for report, counted in ((first, [0, 1, 2, 3]), (second, list(range(6)))):
        aggregate = decode_update(platform.store.get(report.aggregate_cid), task.model)
        assert np.array_equal(aggregate, quantize(models[report.round][counted].mean(axis=0)))

    # inclusion: each round's survivors share it equally
    assert settlement.contributions[members[0].address] == pytest.approx(1 / 4 + 1 / 6)
    assert settlement.contributions[members[4].address] == pytest.approx(1 / 6)
    assert settlement.contributions[members[5].address] == pytest.approx(1 / 6)

    audit = audit_market(market, platform.store)
    rows = {c.name: c for c in audit.checks}
    assert audit.passed and all(c.status == "pass" for c in audit.checks), audit.checks
    assert "rebuilt from the masked models" in rows["rounds"].detail
    assert "1 exclusions re-checked" in rows["exclusions"].detail

    # a rerun of a finished round rebuilds the same round and sends nothing
    again = round_flow(market.address, 1, aggregator.address)
    assert (again.benign_mask, again.aggregate_cid) == (first.benign_mask, first.aggregate_cid)
    assert again.tx_hashes == first.tx_hashes

    for account in [*members, owner]:
        if market.owed(account.address):
            withdraw(market.address, account.address)
    assert market.balance() == 0


def test_the_audit_fails_an_honest_masked_update_excluded_as_malformed(platform):
    market, _, aggregator, members, task = publish(platform, trainers=3, rounds=1)
    d = parameter_count(task.model)
    models = quantize(np.random.default_rng(0).normal(0, 0.2, (3, d)))

    def play(round: int) -> None:
        for i, t in enumerate(members):
            submit_update(market.address, t.address, 1, *mask_and_store(market.address, t.address, 1, models[i], task))
        # the aggregator calls trainer 0's masked update malformed
        wrong = Rejection(reason=ExclusionReason.MASKED_MALFORMED, detail="said so")
        market.exclude(aggregator.account, 1, {0: wrong})

    def duties(round: int | None = None) -> None:
        for t in members:
            secure_duties(market.address, t.address)

    reports, _ = market_flow(market.address, aggregator.address, play, poll_s=0.01, key_step=duties, reveal_step=duties)
    assert reports[0].benign_mask == 0b110
    rows = {c.name: c for c in audit_market(market, platform.store).checks}
    assert rows["exclusions"].status == "fail"
    assert "pass every check: excluded without cause" in rows["exclusions"].detail
    assert rows["rounds"].status == "pass"  # the survivors' mean itself is right


def test_a_secure_task_runs_only_the_rules_that_read_no_single_update():
    task = TaskSpec(aggregation="secure")
    assert (task.detector, task.aggregator, task.contribution) == ("none", "mean", "inclusion")
    with pytest.raises(ValidationError, match="cannot run detector 'krum'"):
        TaskSpec(aggregation="secure", detector="krum")
    with pytest.raises(ValidationError, match="no proven settlement"):
        TaskSpec(aggregation="secure", test_chunk_rows=20)
    assert TaskSpec().aggregation == Aggregation.plain and TaskSpec().detector == "two_stage_guarded"


def test_a_secure_market_refuses_round_proofs_and_outlier_rules(platform):
    owner, aggregator = party(platform, "owner"), party(platform, "aggregator")
    terms = dict(
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=3,
        rounds=1,
        participation_reward_wei=0,
        schedule=RewardSchedule(thresholds_bps=(0,), pools_wei=(0,)),
    )
    data = load_digits_dataset().subset(np.arange(100))
    with pytest.raises(ConfigError, match="no round proofs"):
        publish_market(owner.address, data, ModelKind.lr, aggregation="secure", prove_rounds=True, **terms)
    with pytest.raises(ConfigError, match="cannot run detector 'krum'"):
        publish_market(owner.address, data, ModelKind.lr, aggregation="secure", detector="krum", **terms)


def test_a_trainer_process_masks_its_model_and_sits_out_a_round_it_holds_no_keys_for(platform, tmp_path):
    from fedmarket.errors import SecureAggregationError
    from fedmarket.ml.data import encode_dataset
    from fedmarket.secagg import MaskContext
    from fedmarket.secagg.onchain import read_masked
    from fedmarket_flows.market import open_next_round
    from fedmarket_flows.trainer import trainer_round_flow

    market, _, aggregator, members, task = publish(platform, trainers=3, rounds=1)
    data = tmp_path / "share.safetensors"
    data.write_bytes(encode_dataset(load_digits_dataset().subset(np.arange(300, 400))))
    for t in members[:2]:  # trainer 2 posts no keys
        assert secure_duties(market.address, t.address) == "posted keys"
    open_next_round(market.address, aggregator.address)
    assert secure_duties(market.address, members[2].address) == ""  # keys are refused mid-round

    platform.own = members[0]
    cid = trainer_round_flow(market.address, 1, str(data))
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    masked = read_masked(platform.store.get(cid), size=parameter_count(task.model), context=context)
    assert masked.dtype == np.uint64  # a masked model, not a sealed one
    platform.own = members[2]
    with pytest.raises(SecureAggregationError, match="has no usable keys for round 1"):
        trainer_round_flow(market.address, 1, str(data))
    assert market.submitted_mask(1) == 0b001


def test_a_dp_task_in_secure_mode_reports_each_trainers_epsilon_in_its_masked_header(tmp_path):
    """`demo --aggregation secure --dp-epsilon 4`: the aggregator checks each masked model's
    privacy report against the task's terms without opening the model, and the round and market
    reports show what every trainer spent; a report past the budget is excluded."""
    from fedmarket.context import use_platform
    from fedmarket_flows.demo import DemoConfig, demo_flow
    from tests.conftest import make_platform

    platform = make_platform(tmp_path)
    config = DemoConfig(trainers=4, malicious=0, rounds=2, aggregation="secure", dp_epsilon=4.0)
    with use_platform(platform):
        report = demo_flow(config)
        market = platform.market(report.market)
        trainers = market.trainers()
        first, second = (r.dp_epsilon for r in report.rounds)
        assert set(first) == set(second) == set(trainers)
        assert all(0 < first[t] < second[t] <= 4.0 for t in trainers)
        assert report.dp_epsilon == second
        assert audit_market(market, platform.store).passed


def test_a_masked_model_reporting_more_privacy_spent_than_the_budget_is_not_counted(platform):
    from fedmarket.commitments import commit
    from fedmarket.exclusions import masked_rejection
    from fedmarket.secagg import MaskContext
    from fedmarket.secagg.onchain import masked_bytes
    from fedmarket_schemas.market import DifferentialPrivacy, TrainingConfig
    from fedmarket_schemas.rounds import Submission
    from fedmarket_schemas.trainer import PrivacySpent

    trainer = party(platform, "trainer", 0)
    context = MaskContext(platform.chain.chain_id, "0x" + "ab" * 20, 1)
    training = TrainingConfig(dp=DifferentialPrivacy(noise_multiplier=1.0, epsilon_budget=4.0))

    def verdict(privacy):
        raw = masked_bytes(np.zeros(8), party=trainer, index=0, keys={}, context=context, privacy=privacy)
        cid = str(platform.store.put(raw))
        submission = Submission(round=1, trainer=trainer.address, index=0, cid=cid, commitment=commit(raw))
        return masked_rejection(platform.store, submission, 0b1, None, 8, context, training=training)

    assert verdict(PrivacySpent(epsilon=3.9, delta=1e-5, rounds=1)) is None
    over = verdict(PrivacySpent(epsilon=4.5, delta=1e-5, rounds=2))
    assert over.reason == ExclusionReason.MASKED_MALFORMED and "past the task's budget 4" in over.detail
    assert "reports no privacy spent" in verdict(None).detail


def test_the_aggregator_opens_a_round_once_a_complaint_is_answered(platform, monkeypatch):
    """open_next_round waits for the dealer's answer (read again after each pause), so a false
    complaint filed before round 1 does not keep an honest dealer out of it."""
    from fedmarket.secagg import onchain
    from fedmarket_flows.market import open_next_round

    market, _, aggregator, members, _ = publish(platform, trainers=3, rounds=1)
    for t in members:
        assert secure_duties(market.address, t.address) == "posted keys"
    board = onchain.board_of(market)
    board.complain(members[0].account, market.address, 2)
    assert onchain.key_status(platform.store, market, board, 1)[0] == 0b011
    pauses = []

    def dealer_answers_during_the_wait(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the check period, then one poll: trainer 2's daemon answers
            assert secure_duties(market.address, members[2].address) == "sent 1 complaints or answers"

    monkeypatch.setattr("fedmarket_tasks.secure.time.sleep", dealer_answers_during_the_wait)
    assert open_next_round(market.address, aggregator.address, check_s=60.0) == 1
    assert pauses[0] == 60.0 and len(pauses) == 2
    assert onchain.key_status(platform.store, market, board, 1)[0] == 0b111


def test_event_driven_runs_end_instead_of_waiting_for_keys_or_reveals(platform):
    """The deployments' runs (wait false): advance ends while keys are missing, the round ends
    once its survivors are fixed, and each finishes when run again after the listener's
    keys-complete and reveals-complete."""
    from fedmarket_flows.market import advance_flow

    market, _, aggregator, members, task = publish(platform, trainers=3, rounds=1)
    secure_duties(market.address, members[0].address)
    assert advance_flow(market.address, aggregator.address, wait=False) == "waiting-for-keys"
    assert market.current_round() == 0 and market.last_event("SplitSeedFixed") is not None
    for t in members[1:]:
        secure_duties(market.address, t.address)
    assert advance_flow(market.address, aggregator.address, wait=False) == "opened-round-1"

    models = quantize(np.random.default_rng(3).normal(0, 0.2, (3, parameter_count(task.model))))
    for i, t in enumerate(members):
        submit_update(market.address, t.address, 1, *mask_and_store(market.address, t.address, 1, models[i], task))
    assert round_flow(market.address, 1, aggregator.address, wait=False) is None
    assert board_of(market).round_reveals(market.address, 1).open and not market.round_state(1).finalized
    for t in members:
        secure_duties(market.address, t.address)
    report = round_flow(market.address, 1, aggregator.address, wait=False)
    assert report.benign_mask == 0b111 and market.round_state(1).finalized
    aggregate = decode_update(platform.store.get(report.aggregate_cid), task.model)
    assert np.array_equal(aggregate, quantize(models.mean(axis=0)))


def test_a_demo_dealer_whose_shares_do_not_open_sits_out_and_the_market_settles(tmp_path):
    """`demo --aggregation secure --attack bad_shares`: the attacker deals a majority of its
    holders shares that do not open and answers no complaint, so its seeds could never be rebuilt;
    its keys sit every round out, its submissions are excluded, and the others' rounds are
    rebuilt and audited."""
    from fedmarket.context import use_platform
    from fedmarket_flows.demo import DemoConfig, demo_flow
    from tests.conftest import make_platform

    with pytest.raises(ValidationError, match="add --aggregation secure"):
        DemoConfig(trainers=4, malicious=1, attacks=("bad_shares",))
    platform = make_platform(tmp_path)
    config = DemoConfig(trainers=4, malicious=1, rounds=1, aggregation="secure", attacks=("bad_shares",))
    with use_platform(platform):
        report = demo_flow(config)
        market = platform.market(report.market)
        (attacker,) = report.attackers
        index = market.trainers().index(attacker)
        board = board_of(market)
        assert board.complained_mask(market.address, index) == 0b1111 & ~(1 << index)  # every other holder
        assert board.answered_mask(market.address, index) == 0
        honest = 0b1111 & ~(1 << index)
        for r in report.rounds:
            assert r.benign_mask == honest and "MaskedMalformed" in r.flag_reasons[attacker]
        assert market.phase() == "Settled" and report.contributions.get(attacker, 0) == 0
        assert report.payouts.get(attacker, 0) == 0 < min(report.payouts[t] for t in market.trainers() if t != attacker)
        assert audit_market(market, platform.store).passed
