"""Differential privacy for trainers: DP-SGD with Opacus, its accounting, the budget a trainer
keeps, and the privacy report that travels in the update's header to the aggregator."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedmarket.commitments import commit
from fedmarket.errors import MalformedUpdateError, PrivacyBudgetError, PrivacyReportError
from fedmarket.ml.data import encode_dataset, load_digits_dataset
from fedmarket.ml.models import parameter_count
from fedmarket.ml.privacy import for_budget, spent
from fedmarket.ml.training import initial_model, train_local
from fedmarket.ml.updates import check_privacy, encode_update, header_metadata
from fedmarket_flows.trainer import trainer_round_flow
from fedmarket_schemas.market import ModelConfig, TaskSpec, TrainingConfig, UpdateBounds
from fedmarket_schemas.rounds import ExclusionReason
from fedmarket_schemas.trainer import PrivacySpent
from fedmarket_tasks.fetch import fetch_updates
from fedmarket_tasks.trainer import train
from tests.helpers import create_market
from tests.test_round_pipeline import sealed_for

MODEL = ModelConfig()
ROWS = 150  # 10 batches of 16 an epoch
SHARE = load_digits_dataset().subset(np.arange(ROWS))


def dp_training(epsilon: float = 4.0, rounds: int = 3, **fields) -> TrainingConfig:
    plain = TrainingConfig(**fields)
    return plain.model_copy(update={"dp": for_budget(epsilon, plain, rows=ROWS, rounds=rounds)})


def test_the_steps_training_takes_spend_what_the_accountant_says():
    """Three rounds of DP-SGD, each a fresh Opacus engine stepping one accountant, spend exactly
    the closed form a trainer recomputes from the chain (50 steps a round at rate 1/10: under DP-SGD
    a round is `local_epochs` epochs, with no floor on its steps)."""
    training = dp_training()
    accountant = RDPAccountant()
    start = initial_model(MODEL, seed=0)
    for r in range(3):
        start = train_local(start, SHARE, MODEL, training, seed=r, private_seed=r, accountant=accountant)
    assert accountant.history == [(training.dp.noise_multiplier, 0.1, 150)]
    assert spent(training, ROWS, 3).epsilon == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    assert 3.9 <= spent(training, ROWS, 3).epsilon <= 4.0  # the noise found for the budget uses it up


def test_noise_and_clipping_are_applied():
    """Same private seed, same model; another seed, another model; a tiny clipping norm with no
    noise to speak of moves the model at most lr x steps x norm (x the Poisson batch's spread)."""
    training = dp_training()
    start = initial_model(MODEL, seed=0)
    first, again, other = (train_local(start, SHARE, MODEL, training, seed=0, private_seed=s) for s in (1, 1, 2))
    assert np.array_equal(first, again) and not np.allclose(first, other)
    plain = train_local(start, SHARE, MODEL, TrainingConfig(), seed=0)
    clip = 1e-3
    tight = TrainingConfig().model_copy(
        update={"dp": for_budget(1e6, TrainingConfig(), rows=ROWS, rounds=1, max_grad_norm=clip)}
    )
    moved = np.linalg.norm(train_local(start, SHARE, MODEL, tight, seed=0, private_seed=0) - start)
    assert moved <= 1.0 * 50 * clip * 2 < np.linalg.norm(plain - start) / 10


def test_a_trainer_refuses_a_round_past_its_budget():
    training = dp_training(epsilon=2.0, rounds=2)
    task = TaskSpec(training=training)
    start = initial_model(MODEL, seed=0)
    assert spent(training, ROWS, 2).epsilon <= 2.0 < spent(training, ROWS, 3).epsilon
    local = train.fn("t", 2, start, SHARE, task, seed=0, trained_before=1)
    assert local.shape == start.shape
    with pytest.raises(PrivacyBudgetError, match=r"round 3 of training would spend epsilon 2\.\d+ .* past .* 2"):
        train.fn("t", 3, start, SHARE, task, seed=0, trained_before=2)


def test_the_aggregator_takes_only_updates_that_report_privacy_within_the_budget(platform):
    training = dp_training(epsilon=2.0)
    market, _, aggregator, members, _ = create_market(platform, trainers=4, rounds=2)
    market.open_round(aggregator.account, str(platform.store.put(b"global")), commit(b"global"))
    zeros = np.zeros(parameter_count(MODEL))
    updates = [
        encode_update(zeros, MODEL, PrivacySpent(epsilon=1.5, delta=1e-5, rounds=1)),
        encode_update(zeros, MODEL),
        encode_update(zeros, MODEL, PrivacySpent(epsilon=2.5, delta=1e-5, rounds=3)),
        encode_update(zeros, MODEL, PrivacySpent(epsilon=1.0, delta=1e-3, rounds=1)),
    ]
    for member, update in zip(members, updates):
        market.submit(
            member.account, 1, str(platform.store.put(sealed_for(platform, market, member, 1, update))), commit(update)
        )
    models = fetch_updates.fn(
        market.address, aggregator.address, 1, MODEL, UpdateBounds(), zeros, training, key="unused"
    )

    assert models.trainers == [members[0].address]
    assert models.privacy == {members[0].address: PrivacySpent(epsilon=1.5, delta=1e-5, rounds=1)}
    details = [models.rejected[m.address] for m in members[1:]]
    assert {r.reason for r in details} == {ExclusionReason.MALFORMED_UPDATE}
    assert [r.detail.split(":", 1)[0] for r in details] == ["PrivacyReportError"] * 3
    assert ["no privacy spent" in details[0].detail, "past the task's budget" in details[1].detail] == [True, True]
    assert "delta 0.001" in details[2].detail
    # a task without DP takes all four
    plain = fetch_updates.fn(
        market.address, aggregator.address, 1, MODEL, UpdateBounds(), zeros, TrainingConfig(), key="unused"
    )
    assert len(plain.trainers) == 4 and plain.privacy == {}


def test_a_malformed_report_or_header_is_named():
    training = dp_training()
    bad = encode_update(np.zeros(parameter_count(MODEL)), MODEL)
    bad = bad.replace(b'"format"', b'"dp":"{}","format"', 1)  # header length is recomputed below
    header_len = int.from_bytes(bad[:8], "little") + len(b'"dp":"{}",')
    bad = header_len.to_bytes(8, "little") + bad[8:]
    with pytest.raises(PrivacyReportError, match="privacy report is malformed: Field required"):
        check_privacy(bad, training)
    with pytest.raises(MalformedUpdateError, match="update header is not safetensors JSON"):
        header_metadata(b"\x05")


def test_a_trainer_process_reports_what_it_spent_and_stops_at_its_budget(platform, tmp_path):
    """The trainer's own flow counts the rounds it trained in from the chain, reports its epsilon in
    the sealed update's header, which the aggregator reads, and refuses the round that would pass
    the budget, submitting nothing."""
    data = tmp_path / "share.safetensors"
    data.write_bytes(encode_dataset(SHARE))
    task = TaskSpec(training=dp_training(epsilon=3.0, rounds=1))
    task_cid = str(platform.store.put(task.model_dump_json().encode()))
    market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=2, task_cid=task_cid)
    start = initial_model(MODEL, seed=0)
    global_model = encode_update(start, MODEL)
    global_cid = str(platform.store.put(global_model))
    platform.own = members[0]

    market.open_round(aggregator.account, global_cid, commit(global_model))
    trainer_round_flow(market.address, 1, str(data))
    models = fetch_updates.fn(
        market.address, aggregator.address, 1, MODEL, UpdateBounds(), start, task.training, key="unused"
    )
    assert models.privacy == {members[0].address: spent(task.training, ROWS, 1)}

    for other in members[1:]:
        market.submit(other.account, 1, str(platform.store.put(b"x")), "0x" + "22" * 32)
    market.finalize_round(aggregator.account, 1, global_cid, commit(global_model), 0b001)
    market.open_round(aggregator.account, global_cid, commit(global_model))
    with pytest.raises(PrivacyBudgetError, match="round 2 of training would spend"):
        trainer_round_flow(market.address, 2, str(data))
    assert market.submitted_mask(2) == 0


def test_a_dp_market_reports_every_trainers_epsilon_and_passes_its_audit(tmp_path):
    """`demo --dp-epsilon`: the noise lets the smallest share train every round within the budget;
    each round's and the market's artifacts show what every trainer reports it spent."""
    from fedmarket.audit import audit_market
    from fedmarket.context import use_platform
    from fedmarket_flows.demo import DemoConfig, demo_flow
    from fedmarket_tasks.report import artifact_key
    from tests.conftest import make_platform
    from tests.test_demo import latest_artifact

    platform = make_platform(tmp_path)
    config = DemoConfig(trainers=4, malicious=1, rounds=2, split="dirichlet", dirichlet_alpha=1.0, dp_epsilon=4.0)
    with use_platform(platform):
        report = demo_flow(config)
    assert report.dp["epsilon_budget"] == 4.0 and report.dp["noise_multiplier"] > 0
    first, second = (r.dp_epsilon for r in report.rounds)
    trainers = platform.market(report.market).trainers()
    assert set(first) == set(second) == set(trainers)
    assert all(0 < first[t] < second[t] <= 4.0 for t in trainers)
    assert max(second.values()) >= 3.9 > min(second.values())  # the smallest share spends the budget
    assert report.dp_epsilon == second
    assert audit_market(platform.market(report.market), platform.store).passed
    with use_platform(platform):
        rows = latest_artifact(artifact_key(report.market, "round", 2)).data
        assert '"dp_epsilon"' in latest_artifact(artifact_key(report.market, "trainers")).data
    assert all(f'"dp_epsilon": {round(second[t], 3)}' in rows for t in trainers)


def test_the_published_task_carries_the_owners_training_and_dp_terms(platform):
    """What `fedmarket owner create --batch-size 8 --dp-noise-multiplier 1.1 --dp-epsilon-budget 6`
    publishes: the task under the market's CID holds both, so every trainer reads them."""
    from fedmarket_schemas.market import DifferentialPrivacy, ModelKind, RewardSchedule
    from fedmarket_tasks.owner import publish_market
    from tests.helpers import party

    owner, aggregator = party(platform, "owner"), party(platform, "aggregator")
    privacy = DifferentialPrivacy(noise_multiplier=1.1, epsilon_budget=6.0)
    market, *_ = publish_market(
        owner.address,
        load_digits_dataset().subset(np.arange(300)),
        ModelKind.lr,
        training=TrainingConfig.for_model(ModelKind.lr, batch_size=8),
        privacy=privacy,
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=3,
        rounds=2,
        participation_reward_wei=10**15,
        schedule=RewardSchedule(thresholds_bps=(5000,), pools_wei=(10**17,)),
    )
    task = TaskSpec.model_validate_json(platform.store.get(market.spec_cid()))
    assert task.training == TrainingConfig(batch_size=8, learning_rate=1.0, dp=privacy)
