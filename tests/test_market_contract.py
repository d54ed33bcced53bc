"""The market contract through the `fedmarket` chain adapter, against the in-process EVM and a
real anvil node: every scenario of the protocol, each bad call reverting with its named error and
changing nothing, and the market rebuilt from events matching the contract after each one."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from fedmarket.audit import audit_market, ledger_differences
from fedmarket.chain import FactoryClient, seed_commitment
from fedmarket.chain.ledger import MarketLedger
from fedmarket.context import Platform, use_platform
from fedmarket.errors import ContractRevertError, FedMarketError, ProtocolError, VerifierMismatchError
from fedmarket.field import BN254_FIELD
from fedmarket.settings import Settings
from tests.helpers import assert_ledger_matches, cid_of, create_market, party, small_spec, snapshot

COMMITMENT = "0x" + "22" * 32


def submit_all(platform, market, members, round):
    for i, t in enumerate(members):
        market.submit(t.account, round, cid_of(platform, f"update {round} {i}".encode()), COMMITMENT)


def counted_batches(platform, monkeypatch) -> list[int]:
    """The size of each JSON-RPC batch the platform's node is sent from now on (none in process)."""
    provider, batches = platform.chain._w3.provider, []
    if hasattr(provider, "make_batch_request"):
        original = provider.make_batch_request
        monkeypatch.setattr(
            provider, "make_batch_request", lambda requests: batches.append(len(requests)) or original(requests)
        )
    return batches


def open_round(platform, market, aggregator, round=1):
    market.open_round(aggregator.account, cid_of(platform, f"global {round}".encode()), "0x" + "03" * 32)


def finalize(platform, market, aggregator, round, mask):
    return market.finalize_round(
        aggregator.account, round, cid_of(platform, f"agg {round}".encode()), "0x" + "04" * 32, mask
    )


def expect_revert(name, call):
    with pytest.raises(ContractRevertError) as info:
        call()
    assert info.value.error_name == name, str(info.value)
    assert isinstance(info.value, FedMarketError)
    return info.value


def run_rounds(platform, market, aggregator, members, rounds=2, mask=0b111):
    for r in range(1, rounds + 1):
        open_round(platform, market, aggregator, r)
        submit_all(platform, market, members, r)
        finalize(platform, market, aggregator, r, mask)


# ---------------------------------------------------------------- registration and seeds


def test_second_registration_reverts_and_changes_nothing(any_platform):
    market, _, _, members, _ = create_market(any_platform, register=False)
    summary = cid_of(any_platform, b"summary")
    t = members[0]
    market.register(t.account, t.public_box_key, t.split_seed(market.address), summary)
    before = snapshot(market)
    err = expect_revert(
        "AlreadyRegistered", lambda: market.register(t.account, t.public_box_key, t.split_seed(market.address), summary)
    )
    assert err.error_args["trainer"] == t.address
    assert snapshot(market) == before
    assert_ledger_matches(market)


def test_split_seed_comes_from_the_trainers_revealed_seeds(any_platform):
    market, _, _, members, _ = create_market(any_platform, reveal=False)
    chain = any_platform.chain
    t0 = members[0]
    local = seed_commitment(chain.chain_id, market.address, t0.address, t0.split_seed(market.address))
    onchain = chain.call(market.contract.functions.seedCommitmentFor(t0.address, t0.split_seed(market.address)))
    assert local == bytes(onchain)
    assert market.phase() == "SeedReveal"
    expect_revert("SeedMismatch", lambda: market.reveal(t0.account, members[1].split_seed(market.address)))
    for t in members:
        market.reveal(t.account, t.split_seed(market.address))
    assert market.phase() == "Training"
    outsider = party(any_platform, "outsider")
    market.fix_split_seed(outsider.account)  # a later block: the seed block's hash is known
    xored = 0
    for t in members:
        xored ^= int.from_bytes(t.split_seed(market.address), "big")
    anchor = chain.block_hash(market.seed_block())
    expected = keccak(
        abi_encode(
            ["uint256", "address", "bytes32", "bytes32"],
            [chain.chain_id, market.address, xored.to_bytes(32, "big"), anchor],
        )
    )
    assert market.split_seed() == expected
    expect_revert("SplitSeedAlreadyFixed", lambda: market.fix_split_seed(outsider.account))
    assert_ledger_matches(market)


def test_trainer_who_does_not_reveal_is_excluded(any_platform):
    market, _, aggregator, members, spec = create_market(any_platform, reveal=False)
    for t in members[:2]:
        market.reveal(t.account, t.split_seed(market.address))
    expect_revert("RevealStillOpen", lambda: market.close_reveal(aggregator.account))
    any_platform.chain.advance_time(spec.reveal_window_s + 1)
    market.close_reveal(aggregator.account)
    assert market.active_trainers() == [t.address for t in members[:2]]
    open_round(any_platform, market, aggregator)
    expect_revert("NotActive", lambda: submit_all(any_platform, market, members[2:], 1))
    submit_all(any_platform, market, members[:2], 1)
    finalize(any_platform, market, aggregator, 1, 0b011)  # both active submitted: no need to wait
    assert_ledger_matches(market)


class EstimatedBefore:
    """A contract call whose first gas estimate was made on an earlier state."""

    def __init__(self, fn, gas: int):
        self.fn, self.fn_name, self.gas, self.estimates = fn, fn.fn_name, gas, 0

    def estimate_gas(self, tx: dict, block_identifier=None) -> int:
        self.estimates += 1
        return self.gas if self.estimates == 1 else self.fn.estimate_gas(tx, block_identifier)

    def build_transaction(self, tx: dict) -> dict:
        return self.fn.build_transaction(tx)


def test_a_reveal_estimated_before_the_others_is_sent_again_when_it_runs_out_of_gas(any_platform):
    """Trainers revealing at once each estimate gas as if another would be last; the one mined last
    also starts training and runs out of that gas. The adapter estimates again and resends once."""
    market, _, _, members, _ = create_market(any_platform, reveal=False)
    first, second, last = members
    market.reveal(first.account, first.split_seed(market.address))
    middle = market.reveal(second.account, second.split_seed(market.address)).gas_used
    # `last` estimated as a middle revealer (anvil's estimate is the gas used), now mined last
    early = EstimatedBefore(market.contract.functions.reveal(last.split_seed(market.address)), middle)
    nonce = any_platform.chain._w3.eth.get_transaction_count(last.address)
    any_platform.chain.transact(last.account, early)
    assert early.estimates == 3  # the stale one, once more after the revert, once to resend
    assert any_platform.chain._w3.eth.get_transaction_count(last.address) == nonce + 2
    assert market.phase() == "Training" and market.active_trainers() == [t.address for t in members]


def test_nobody_revealing_cancels_and_refunds_the_owner(any_platform):
    market, owner, _, members, spec = create_market(any_platform, reveal=False)
    any_platform.chain.advance_time(spec.reveal_window_s + 1)
    market.close_reveal(members[0].account)
    assert market.phase() == "Cancelled"
    assert market.owed(owner.address) == market.deposit()
    assert_ledger_matches(market)


def test_cancel_after_registration_deadline_refunds_owner(any_platform):
    market, owner, _, members, spec = create_market(any_platform, register=False)
    t = members[0]
    expect_revert("NotStalled", lambda: market.cancel(t.account))
    any_platform.chain.advance_time(spec.registration_window_s + 1)
    expect_revert(
        "RegistrationClosed",
        lambda: market.register(t.account, t.public_box_key, t.split_seed(market.address), cid_of(any_platform, b"s")),
    )
    market.cancel(t.account)
    assert market.owed(owner.address) == market.deposit()
    market.withdraw(owner.account)
    assert market.balance() == 0
    assert_ledger_matches(market)


def test_owner_and_aggregator_cannot_train(any_platform):
    market, owner, aggregator, _, _ = create_market(any_platform, register=False)
    for p in (owner, aggregator):
        expect_revert(
            "PartyCannotTrain",
            lambda p=p: market.register(
                p.account, p.public_box_key, p.split_seed(market.address), cid_of(any_platform, b"s")
            ),
        )


# ---------------------------------------------------------------- rounds


def test_submission_after_deadline_reverts(any_platform):
    market, _, aggregator, members, spec = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    any_platform.chain.advance_time(spec.round_duration_s + 1)
    before = snapshot(market)
    expect_revert("SubmissionDeadlinePassed", lambda: submit_all(any_platform, market, members[:1], 1))
    assert snapshot(market) == before


def test_submission_for_a_round_not_open_reverts(any_platform):
    market, _, aggregator, members, _ = create_market(any_platform)
    expect_revert("RoundNotOpen", lambda: submit_all(any_platform, market, members[:1], 1))
    open_round(any_platform, market, aggregator)
    expect_revert("RoundNotOpen", lambda: submit_all(any_platform, market, members[:1], 2))
    assert market.submitted_mask(1) == 0


def test_duplicate_and_out_of_field_submissions_revert(any_platform):
    market, _, aggregator, members, _ = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members[:1], 1)
    before = snapshot(market)
    expect_revert("AlreadySubmitted", lambda: submit_all(any_platform, market, members[:1], 1))
    too_big = "0x" + BN254_FIELD.to_bytes(32, "big").hex()
    expect_revert(
        "InvalidCommitment", lambda: market.submit(members[1].account, 1, cid_of(any_platform, b"u"), too_big)
    )
    assert snapshot(market) == before


def test_finalize_only_by_the_aggregator(any_platform):
    market, owner, aggregator, members, _ = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members, 1)
    before = snapshot(market)
    agg_cid = cid_of(any_platform, b"aggregate")
    for intruder in (owner, members[0]):
        expect_revert(
            "NotAggregator", lambda i=intruder: market.finalize_round(i.account, 1, agg_cid, "0x" + "04" * 32, 0b111)
        )
    assert snapshot(market) == before
    market.finalize_round(aggregator.account, 1, agg_cid, "0x" + "04" * 32, 0b011)
    assert market.round_state(1).finalized and market.benign_rounds(2) == 0
    assert market.model_commitment() == "0x" + "04" * 32  # the next round starts from the aggregate
    assert_ledger_matches(market)


def test_mask_cannot_include_a_trainer_that_did_not_submit(any_platform):
    market, _, aggregator, members, spec = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members[:2], 1)
    expect_revert("RoundStillOpen", lambda: finalize(any_platform, market, aggregator, 1, 0b011))
    any_platform.chain.advance_time(spec.round_duration_s + 1)
    before = snapshot(market)
    err = expect_revert("MaskIncludesMissingSubmission", lambda: finalize(any_platform, market, aggregator, 1, 0b111))
    assert err.error_args["index"] == 2
    assert snapshot(market) == before


def test_round_submissions_read_back_from_events_and_storage(any_platform):
    market, _, aggregator, members, _ = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members, 1)
    subs = market.submissions(1)
    assert [s.trainer for s in subs] == [m.address for m in members]
    assert all(s.commitment == COMMITMENT for s in subs)
    assert subs[1].cid == cid_of(any_platform, b"update 1 1")
    assert market.model_cid(1) == cid_of(any_platform, b"global 1")


# ---------------------------------------------------------------- settlement and abort paths


def test_settle_pays_equation_5_and_withdraw_twice_reverts(any_platform):
    market, owner, aggregator, members, spec = create_market(any_platform)
    run_rounds(any_platform, market, aggregator, members, mask=0b011)  # trainer 2 flagged in both rounds
    market.settle(aggregator.account, 9500, [3_000_000, 1_000_000, 0])
    pool, r_p = 10**18, spec.participation_reward_wei
    assert market.owed(members[0].address) == 2 * r_p + pool * 3 // 4
    assert market.owed(members[1].address) == 2 * r_p + pool * 1 // 4
    assert market.owed(members[2].address) == 0
    assert market.owed(aggregator.address) == spec.aggregator_fee_wei
    everyone = [owner, aggregator, *members]
    assert sum(market.owed(p.address) for p in everyone) == market.deposit()
    ledger = assert_ledger_matches(market)
    assert ledger.contributions == [3_000_000, 1_000_000, 0] and ledger.accuracy_bps == 9500

    market.withdraw(members[0].account)
    before = snapshot(market)
    balance = any_platform.chain.balance(members[0].address)
    expect_revert("NothingToWithdraw", lambda: market.withdraw(members[0].account))
    assert snapshot(market) == before
    assert any_platform.chain.balance(members[0].address) == balance
    for p in everyone:
        if market.owed(p.address):
            market.withdraw(p.account)
    assert market.balance() == 0
    assert_ledger_matches(market)


def test_an_audit_sees_one_state_while_withdrawals_land(any_platform, monkeypatch):
    """A payout withdrawn between the audit's event reads and its view reads would part the
    ledger from the views: the audit reads the market as of the head when it starts."""
    market, owner, aggregator, members, _ = create_market(any_platform)
    run_rounds(any_platform, market, aggregator, members)
    market.settle(aggregator.account, 9500, [3_000_000, 1_000_000, 0])
    pinned = market.at_head()
    owed = market.owed(members[0].address)
    market.withdraw(members[0].account)
    assert pinned.owed(members[0].address) == owed > 0 == market.owed(members[0].address)
    ledger = MarketLedger.rebuild(pinned)  # read after the withdrawal, of the state before it
    assert ledger_differences(pinned, ledger) == []
    assert any("owed to" in d for d in ledger_differences(market, ledger))

    rebuild = MarketLedger.rebuild.__func__

    def rebuild_then_withdraw(cls, client):  # another party withdraws while the audit reads
        rebuilt = rebuild(cls, client)
        market.withdraw(members[1].account)
        return rebuilt

    monkeypatch.setattr(MarketLedger, "rebuild", classmethod(rebuild_then_withdraw))
    report = audit_market(market, any_platform.store)
    assert market.owed(members[1].address) == 0
    assert [c.status for c in report.checks if c.name == "ledger"] == ["pass"], report.checks


def test_positive_contribution_for_a_never_benign_trainer_reverts(any_platform):
    market, _, aggregator, members, _ = create_market(any_platform)
    run_rounds(any_platform, market, aggregator, members, mask=0b011)
    before = snapshot(market)
    expect_revert("ContributionForNeverBenignTrainer", lambda: market.settle(aggregator.account, 9500, [1, 1, 1]))
    assert snapshot(market) == before


def test_deposit_must_cover_the_largest_payout(any_platform):
    owner = party(any_platform, "owner")
    aggregator = party(any_platform, "aggregator")
    spec = small_spec(any_platform, aggregator)
    factory, _ = FactoryClient.deploy(any_platform.chain, owner.account)
    err = expect_revert(
        "InsufficientDeposit", lambda: factory.create_market(owner.account, spec, spec.max_payout() - 1)
    )
    assert err.error_args["required"] == spec.max_payout()
    assert factory.markets_of(owner.address) == []


def test_markets_are_clones_of_the_factory_implementation(any_platform):
    market, owner, _, _, _ = create_market(any_platform, register=False)
    w3 = any_platform.chain._w3
    code = bytes(w3.eth.get_code(market.address))
    assert len(code) == 45 and code[:10] == bytes.fromhex("363d3d373d3d3d363d73")  # EIP-1167
    (created,) = market.contract.events.MarketInitialized().get_logs(from_block=0)
    factory = FactoryClient(any_platform.chain, w3.eth.get_transaction(created["transactionHash"])["to"])
    assert factory.implementation().lower() == "0x" + code[10:30].hex()
    assert factory.is_market(market.address)
    assert factory.markets_of(owner.address)[-1] == market.address
    assert not factory.is_market(factory.implementation())  # the implementation itself is no market


def test_a_factory_over_another_verifier_factory_vouches_for_nothing(platform):
    """A market factory deployed over a contract that is not VerifierFactory (here another market
    factory, code but not ours) could vouch for any adapter: clients refuse what it says."""
    chain, account = platform.chain, party(platform, "deployer").account
    factory, _ = FactoryClient.deploy(chain, account)
    assert factory.verifier_info(factory.address).kind == "none"  # ours: it answers
    forged, _ = chain.deploy(account, "MarketFactory", factory.address)
    with pytest.raises(VerifierMismatchError, match="not VerifierFactory's code"):
        FactoryClient(chain, forged.address).verifier_info(factory.address)


def test_stalled_aggregator_lets_anyone_force_settlement(any_platform):
    market, owner, aggregator, members, spec = create_market(any_platform)
    run_rounds(any_platform, market, aggregator, members, rounds=1, mask=0b101)
    open_round(any_platform, market, aggregator, 2)  # round 2 opened and never finalized
    submit_all(any_platform, market, members, 2)
    expect_revert("NotStalled", lambda: market.force_settle(members[1].account))
    any_platform.chain.advance_time(spec.round_duration_s + spec.aggregator_window_s + 1)
    expect_revert("AggregatorWindowClosed", lambda: finalize(any_platform, market, aggregator, 2, 0b111))
    market.force_settle(members[1].account)
    assert market.phase() == "Aborted"
    r_p = spec.participation_reward_wei
    assert [market.owed(m.address) for m in members] == [r_p, 0, r_p]
    assert market.owed(owner.address) == market.deposit() - 2 * r_p
    assert market.owed(aggregator.address) == 0
    assert_ledger_matches(market)


def test_aggregator_stalling_at_settlement_is_forced_out(any_platform):
    market, owner, aggregator, members, spec = create_market(any_platform)
    run_rounds(any_platform, market, aggregator, members, rounds=2, mask=0b111)
    assert market.phase() == "Settlement"
    any_platform.chain.advance_time(spec.aggregator_window_s + 1)
    expect_revert("AggregatorWindowClosed", lambda: market.settle(aggregator.account, 9500, [1, 1, 1]))
    market.force_settle(owner.account)
    assert [market.owed(m.address) for m in members] == [2 * spec.participation_reward_wei] * 3
    for p in [owner, *members]:
        market.withdraw(p.account)
    assert market.balance() == 0
    assert_ledger_matches(market)


def test_a_markets_logs_are_read_from_its_creation_block_in_bounded_pages(tmp_path):
    """Public nodes cap one eth_getLogs at a few thousand blocks: every read of a market's logs
    starts at the block that created it and asks for at most FEDMARKET_CHAIN_LOG_PAGE_BLOCKS."""
    platform = Platform.from_settings(Settings(store_dir=tmp_path / "blocks", chain_log_page_blocks=3))
    with use_platform(platform):
        for i in range(6):  # blocks before the market exists
            party(platform, "bystander", i)
        market, _, aggregator, members, _ = create_market(platform, trainers=3)
        asked = []
        pages = platform.chain._pages

        def recorded(start, end):
            for page in pages(start, end):
                asked.append(page)
                yield page

        platform.chain._pages = recorded
        registered = market.events("TrainerRegistered")
        assert [e["args"]["trainer"] for e in registered] == [m.address for m in members]
        assert asked[0][0] == market.creation_block() > 6
        assert all(end - start < 3 for start, end in asked) and len(asked) > 1
        assert [a for a, _ in asked] == list(range(market.creation_block(), platform.chain.head() + 1, 3))
        asked.clear()
        assert_ledger_matches(market)  # the ledger reads through the same pages
        assert asked and asked[0][0] == market.creation_block()


def test_bonds_are_returned_at_the_reveal_and_forfeited_without_one(any_platform):
    """A trainer pays the bond to register and may withdraw it once it revealed; the one that
    never reveals loses it to the owner; the ledger rebuilt from events agrees throughout."""
    bond = 10**16
    market, owner, aggregator, members, spec = create_market(any_platform, reveal=False, trainer_bond_wei=bond)
    assert market.trainer_bond() == bond and market.balance() == spec.max_payout() + 3 * bond
    for t in members[:2]:
        market.reveal(t.account, t.split_seed(market.address))
    assert market.owed(members[0].address) == bond
    assert_ledger_matches(market)
    market.withdraw(members[0].account)
    any_platform.chain.advance_time(spec.reveal_window_s + 1)
    market.close_reveal(aggregator.account)
    assert market.owed(owner.address) == bond  # the third trainer's
    assert market.owed(members[2].address) == 0 and market.owed(members[1].address) == bond
    assert_ledger_matches(market)
    assert market.balance() == market.total_owed() + market.undistributed()


def test_a_markets_per_round_reads_are_one_batch_on_a_node(any_platform, monkeypatch):
    """Every round's state and masks, and every finalized round's aggregate: what the per-round
    reads give, in a JSON-RPC batch each on a node and one scan of the finalize events."""
    market, _, aggregator, members, _ = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members, 1)
    tx = finalize(any_platform, market, aggregator, 1, 0b011)
    open_round(any_platform, market, aggregator, round=2)
    batches = counted_batches(any_platform, monkeypatch)
    states = market.round_states([1, 2])
    submitted, excluded = market.masks("submittedMask", [1, 2]), market.masks("excludedMask", [1, 2])
    assert batches == ([] if any_platform.chain.in_process else [2, 2, 2])
    assert states == [market.round_state(1), market.round_state(2)] and [s.finalized for s in states] == [True, False]
    assert submitted == [0b111, 0] and excluded == [0, 0]
    assert market.finalized_rounds() == {1: (market.aggregate_of(1)[0], tx.tx_hash)}
    with pytest.raises(ProtocolError, match="benignMask is not a per-round mask"):
        market.masks("benignMask", [1])


def test_a_rounds_per_trainer_reads_are_one_batch_on_a_node(any_platform, monkeypatch):
    """Submissions and registered keys: what one read per trainer gives, in one JSON-RPC batch on
    a node (one by one in process, where there are no round trips)."""
    market, _, aggregator, members, _ = create_market(any_platform)
    open_round(any_platform, market, aggregator)
    submit_all(any_platform, market, members, 1)
    batches = counted_batches(any_platform, monkeypatch)
    submissions = market.submissions(1)
    keys = market.encryption_keys([m.address for m in members])
    assert [s.commitment for s in submissions] == [market.commitment_of(1, i) for i in range(3)] == [COMMITMENT] * 3
    assert keys == {m.address: m.public_box_key for m in members}
    opened = market.last_event("RoundOpened", round=1)[1].block_number
    gas = market.submission_gas(1, from_block=opened)
    logs = market.events("UpdateSubmitted", round=1)
    assert gas == sum(any_platform.chain.receipt(log["transactionHash"]).gas_used for log in logs) > 3 * 21_000
    assert batches == ([] if any_platform.chain.in_process else [3, 3, 3])
    # a revert inside a batch is the contract's named error, as in a single call
    stranger = party(any_platform, "stranger").address
    with pytest.raises(ContractRevertError) as refused:
        any_platform.chain.call_many(market.contract, "trainerIndex", [(members[0].address,), (stranger,)])
    assert refused.value.error_name == "NotRegistered"
    indices = any_platform.chain.call_many(market.contract, "trainerIndex", [(m.address,) for m in members])
    assert indices == [0, 1, 2]
