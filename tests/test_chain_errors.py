"""Bad calls revert with a named error and change nothing on chain."""

from __future__ import annotations

import pytest

from fedmarket.chain import FactoryClient
from fedmarket.errors import ContractRevertError, FedMarketError
from tests.helpers import cid_of, create_market, party, small_spec, snapshot


def submit_all(platform, market, members, round):
    for i, t in enumerate(members):
        market.submit(t.account, round, cid_of(platform, f"update {round} {i}".encode()), "0x" + "22" * 32)


def open_round(platform, market, aggregator, round=1):
    market.open_round(aggregator.account, cid_of(platform, f"global {round}".encode()), "0x" + "33" * 32)


def expect_revert(name, call):
    with pytest.raises(ContractRevertError) as info:
        call()
    assert info.value.error_name == name, str(info.value)
    assert isinstance(info.value, FedMarketError)
    return info.value


def test_second_registration_reverts_and_changes_nothing(platform):
    market, _, _, members, _ = create_market(platform, register=False)
    summary = cid_of(platform, b"summary")
    market.register(members[0].account, members[0].public_box_key, summary)
    before = snapshot(market)
    err = expect_revert("AlreadyRegistered", lambda: market.register(members[0].account, members[0].public_box_key, summary))
    assert err.error_args["trainer"] == members[0].address
    assert snapshot(market) == before


def test_submission_after_deadline_reverts(platform):
    market, _, aggregator, members, spec = create_market(platform)
    open_round(platform, market, aggregator)
    platform.chain.advance_time(spec.round_duration_s + 1)
    before = snapshot(market)
    expect_revert("SubmissionDeadlinePassed", lambda: submit_all(platform, market, members[:1], 1))
    assert snapshot(market) == before


def test_submission_for_a_round_not_open_reverts(platform):
    market, _, aggregator, members, _ = create_market(platform)
    before = snapshot(market)
    expect_revert("RoundNotOpen", lambda: submit_all(platform, market, members[:1], 1))
    open_round(platform, market, aggregator)
    expect_revert("RoundNotOpen", lambda: submit_all(platform, market, members[:1], 2))
    assert snapshot(market)["rounds"][1].submitted_mask == 0
    assert before["phase"] == "Training"


def test_duplicate_submission_reverts(platform):
    market, _, aggregator, members, _ = create_market(platform)
    open_round(platform, market, aggregator)
    submit_all(platform, market, members[:1], 1)
    before = snapshot(market)
    expect_revert("AlreadySubmitted", lambda: submit_all(platform, market, members[:1], 1))
    assert snapshot(market) == before


def test_finalize_only_by_the_aggregator(platform):
    market, owner, aggregator, members, _ = create_market(platform)
    open_round(platform, market, aggregator)
    submit_all(platform, market, members, 1)
    before = snapshot(market)
    agg_cid = cid_of(platform, b"aggregate")
    for intruder in (owner, members[0]):
        expect_revert(
            "NotAggregator",
            lambda: market.finalize_round(intruder.account, 1, agg_cid, "0x" + "44" * 32, 0b111),
        )
    assert snapshot(market) == before
    market.finalize_round(aggregator.account, 1, agg_cid, "0x" + "44" * 32, 0b011)
    assert market.round_state(1).finalized and market.benign_rounds(members[2].address) == 0


def test_mask_cannot_include_a_trainer_that_did_not_submit(platform):
    market, _, aggregator, members, spec = create_market(platform)
    open_round(platform, market, aggregator)
    submit_all(platform, market, members[:2], 1)
    platform.chain.advance_time(spec.round_duration_s + 1)
    before = snapshot(market)
    expect_revert(
        "MaskIncludesMissingSubmission",
        lambda: market.finalize_round(aggregator.account, 1, cid_of(platform, b"a"), "0x" + "44" * 32, 0b111),
    )
    assert snapshot(market) == before


def run_to_settlement(platform, market, aggregator, members, rounds=2, mask=0b111):
    for r in range(1, rounds + 1):
        open_round(platform, market, aggregator, r)
        submit_all(platform, market, members, r)
        market.finalize_round(aggregator.account, r, cid_of(platform, f"agg {r}".encode()), "0x" + "44" * 32, mask)


def test_settle_pays_equation_5_and_withdraw_twice_reverts(platform):
    market, owner, aggregator, members, spec = create_market(platform)
    run_to_settlement(platform, market, aggregator, members, mask=0b011)  # trainer 2 flagged in both rounds
    market.settle(aggregator.account, 9500, [3_000_000, 1_000_000, 0])
    pool, r_p = 10**18, spec.participation_reward_wei
    assert market.owed(members[0].address) == 2 * r_p + pool * 3 // 4
    assert market.owed(members[1].address) == 2 * r_p + pool * 1 // 4
    assert market.owed(members[2].address) == 0
    assert market.owed(aggregator.address) == spec.aggregator_fee_wei
    assert sum(market.owed(a) for a in [owner.address, aggregator.address, *[m.address for m in members]]) == market.deposit()

    market.withdraw(members[0].account)
    before = snapshot(market)
    balance = platform.chain.balance(members[0].address)
    expect_revert("NothingToWithdraw", lambda: market.withdraw(members[0].account))
    assert snapshot(market) == before
    assert platform.chain.balance(members[0].address) == balance


def test_positive_contribution_for_a_never_benign_trainer_reverts(platform):
    market, _, aggregator, members, _ = create_market(platform)
    run_to_settlement(platform, market, aggregator, members, mask=0b011)
    before = snapshot(market)
    expect_revert("ContributionForNeverBenignTrainer", lambda: market.settle(aggregator.account, 9500, [1, 1, 1]))
    assert snapshot(market) == before


def test_deposit_must_cover_the_largest_payout(platform):
    owner = party(platform, "owner")
    aggregator = party(platform, "aggregator")
    spec = small_spec(platform, aggregator)
    factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    err = expect_revert("InsufficientDeposit", lambda: factory.create_market(owner.account, spec, spec.max_payout() - 1))
    assert err.error_args["required"] == spec.max_payout()
    assert factory.markets_of(owner.address) == []


def test_stalled_aggregator_lets_anyone_force_settlement(platform):
    market, owner, aggregator, members, spec = create_market(platform)
    run_to_settlement(platform, market, aggregator, members, rounds=1, mask=0b101)
    expect_revert("NotStalled", lambda: market.force_settle(members[1].account))
    platform.chain.advance_time(spec.aggregator_window_s + 1)
    market.force_settle(members[1].account)
    assert market.phase() == "Aborted"
    r_p = spec.participation_reward_wei
    assert [market.owed(m.address) for m in members] == [r_p, 0, r_p]
    assert market.owed(owner.address) == market.deposit() - 2 * r_p
    assert market.owed(aggregator.address) == 0


def test_cancel_after_registration_deadline_refunds_owner(platform):
    market, owner, _, members, spec = create_market(platform, register=False)
    expect_revert("NotStalled", lambda: market.cancel(members[0].account))
    platform.chain.advance_time(spec.registration_window_s + 1)
    expect_revert("RegistrationClosed", lambda: market.register(members[0].account, members[0].public_box_key, cid_of(platform, b"s")))
    market.cancel(members[0].account)
    assert market.owed(owner.address) == market.deposit()
    market.withdraw(owner.account)
    assert market.balance() == 0
