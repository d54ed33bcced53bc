"""Secure aggregation (fedmarket/secagg): masks cancel, dropouts are recovered from shares, and
nothing the aggregator receives tells it one trainer's model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import ValidationError

from fedmarket.chain import FactoryClient
from fedmarket.crypto import generate_private_key, public_key_bytes
from fedmarket.errors import (
    ContractRevertError,
    DecryptionError,
    InvalidShareError,
    MalformedUpdateError,
    NotEnoughSharesError,
)
from fedmarket.fixed_point import quantize
from fedmarket.identity import Party
from fedmarket.secagg import (
    MaskContext,
    Trainer,
    decode_sum,
    feldman,
    make_bundle,
    make_reveal,
    mask_model,
    onchain,
    open_bundle_shares,
    recover_sum,
    round_secrets,
    threshold_for,
)
from fedmarket.secagg.masks import BN254, Z64, Ring, encode_model, self_key, stream
from fedmarket_schemas.rounds import ExclusionReason, Rejection
from fedmarket_schemas.secagg import ShareReveal
from tests.helpers import create_market, party

CHAIN, MARKET = 31337, "0x" + "ab" * 20


class Market:
    """`n` trainers who dealt their keys for `rounds` rounds, as the chain would list them;
    `parties`: theirs, whose secrets `onchain.masked_bytes` derives, else random keys."""

    def __init__(self, n: int, rounds: int = 2, d: int = 650, seed: int = 0, parties: list[Party] | None = None):
        rng = np.random.default_rng(seed)
        if parties is None:
            self.boxes = [generate_private_key() for _ in range(n)]
            self.secrets = [os.urandom(32) for _ in range(n)]
            addresses = ["0x" + f"{i + 1:040x}" for i in range(n)]
        else:
            self.boxes = [p.box_key for p in parties]
            self.secrets = [onchain.secret_of(p, MARKET) for p in parties]
            addresses = [p.address for p in parties]
        self.members = [Trainer(i, a, public_key_bytes(k)) for i, (a, k) in enumerate(zip(addresses, self.boxes))]
        self.bundles = {
            m.index: make_bundle(
                secret=self.secrets[m.index],
                dealer=m,
                box_key=self.boxes[m.index],
                members=self.members,
                rounds=rounds,
                chain_id=CHAIN,
                market=MARKET,
            )
            for m in self.members
        }
        self.models = quantize(rng.normal(0, 0.3, size=(n, d)).astype(np.float32))

    def context(self, round: int) -> MaskContext:
        return MaskContext(CHAIN, MARKET, round)

    def masked(self, round: int, senders: list[int], ring: Ring = Z64) -> dict[int, np.ndarray]:
        ctx = self.context(round)
        peers = {i: bytes.fromhex(b.rounds[round - 1].mask_public_key) for i, b in self.bundles.items()}
        return {
            u: mask_model(
                self.models[u], secrets=round_secrets(self.secrets[u], ctx), me=u, peers=peers, context=ctx, ring=ring
            )
            for u in senders
        }

    def held(self, holder: int, round: int) -> dict[int, tuple[bytes, bytes]]:
        return {
            dealer: open_bundle_shares(bundle, holder=holder, box_key=self.boxes[holder], dealer=self.members[dealer])[
                round - 1
            ]
            for dealer, bundle in self.bundles.items()
        }

    def reveals(self, round: int, survivors: set[int], dropped: set[int], holders: list[int]) -> list[ShareReveal]:
        ctx = self.context(round)
        return [
            make_reveal(held=self.held(h, round), holder=h, survivors=survivors, dropped=dropped, context=ctx)
            for h in holders
        ]


def test_any_threshold_of_feldman_shares_rebuilds_and_fewer_do_not():
    secret, holders = feldman.scalar(os.urandom(32)), (0, 3, 5, 9, 17)
    shares, commitments = feldman.deal(secret, 3, holders, os.urandom(32))
    assert set(shares) == set(holders) and len(commitments) == 3
    assert commitments[0] == feldman.commitment(secret)
    for subset in [(0, 3, 5), (9, 17, 0), (3, 5, 9, 17)]:
        assert feldman.combine({h: shares[h] for h in subset}, 3) == secret
    with pytest.raises(NotEnoughSharesError):
        feldman.combine({0: shares[0], 17: shares[17]}, 3)


def test_a_share_off_the_committed_polynomial_fails_its_check():
    shares, commitments = feldman.deal(feldman.scalar(os.urandom(32)), 3, (0, 1, 2, 3), os.urandom(32))
    assert all(feldman.verify(shares[h], h, commitments) for h in shares)
    assert not feldman.verify(shares[1], 2, commitments)  # another holder's share
    assert not feldman.verify((shares[1] + 1) % feldman.ORDER, 1, commitments)
    assert not feldman.verify(0, 1, commitments) and not feldman.verify(feldman.ORDER, 1, commitments)
    # a polynomial of higher degree than the threshold has no commitments that pass all its shares
    wide, wide_commitments = feldman.deal(feldman.scalar(os.urandom(32)), 4, (0, 1, 2, 3), os.urandom(32))
    assert not feldman.verify(wide[3], 3, wide_commitments[:3])
    assert not feldman.verify(shares[0], 0, (b"\x02" + b"\xff" * 32, *commitments[1:]))  # not a point


def test_threshold_is_a_majority():
    assert [threshold_for(n) for n in (1, 2, 3, 8, 32)] == [1, 2, 2, 5, 17]


def test_masks_cancel_when_everyone_sends():
    market = Market(4)
    masked = market.masked(1, [0, 1, 2, 3])
    everyone = set(range(4))
    reveals = market.reveals(1, everyone, set(), [0, 1, 2])
    recovery = recover_sum(
        masked=masked, bundles=market.bundles, reveals=reveals, participants=everyone, context=market.context(1)
    )
    assert recovery.dropped == ()
    assert np.array_equal(recovery.total.view(np.int64), encode_model(market.models).sum(axis=0))


@pytest.mark.parametrize("ring", [Z64, BN254], ids=lambda r: r.name)
def test_eight_trainers_two_dropping_after_masking_give_the_survivors_mean(ring):
    market = Market(8, rounds=2, d=650, seed=1)
    everyone, dropped = set(range(8)), {2, 6}
    survivors = everyone - dropped
    # the two dropped trainers masked too, but their masked models never arrive
    masked = {u: y for u, y in market.masked(2, sorted(everyone), ring).items() if u in survivors}
    reveals = market.reveals(2, survivors, dropped, sorted(survivors)[:5])  # a threshold of holders
    recovery = recover_sum(
        masked=masked,
        bundles=market.bundles,
        reveals=reveals,
        participants=everyone,
        context=market.context(2),
        ring=ring,
    )
    assert recovery.survivors == (0, 1, 3, 4, 5, 7) and recovery.dropped == (2, 6)
    mean = decode_sum(recovery.total, ring) / len(survivors)
    plain = market.models[sorted(survivors)].mean(axis=0)
    assert np.max(np.abs(mean - plain)) < 1e-12  # grid values sum exactly; only the division rounds
    assert not np.allclose(mean, market.models.mean(axis=0), atol=1e-3)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def test_nothing_the_aggregator_receives_correlates_with_a_trainers_model():
    d = 4096
    market = Market(8, rounds=1, d=d, seed=2)
    everyone, dropped = set(range(8)), {2, 6}
    survivors = everyone - dropped
    ctx = market.context(1)
    masked = {u: y for u, y in market.masked(1, sorted(everyone)).items() if u in survivors}
    reveals = market.reveals(1, survivors, dropped, sorted(survivors))
    # the most the aggregator can take off one masked model: its self mask (b_u is revealed for
    # survivors); the pairwise masks with other survivors stay on
    views = []
    for u, y in masked.items():
        views.append(y.view(np.int64))
        b_u = feldman.scalar_bytes(
            feldman.combine({r.holder: int(r.self_shares[u], 16) for r in reveals}, market.bundles[u].threshold)
        )
        partial = y - stream(self_key(b_u, ctx), d)
        views.append(partial.view(np.int64))
        views.append((partial.view(np.int64) >> 32).astype(np.float64))  # the high half alone
    updates = encode_model(market.models)
    chance = 4.5 / np.sqrt(d)  # |r| of independent series stays below this with overwhelming odds
    worst = max(abs(_correlation(view, updates[v])) for view in views for v in range(8))
    assert worst < chance
    # and the same test sees a model's own correlation when it is there
    assert _correlation(updates[0] + updates[1], updates[0]) > 0.5


def test_a_wrong_revealed_share_is_attributed_and_the_rest_still_rebuild():
    market = Market(5, rounds=1, d=64, seed=3)
    everyone = set(range(5))
    masked = market.masked(1, sorted(everyone))
    reveals = market.reveals(1, everyone, set(), [0, 1, 2, 3])
    liar = reveals[1]
    forged = dict(liar.self_shares)
    forged[4] = "00" * 31 + "01"
    reveals[1] = liar.model_copy(update={"self_shares": forged})
    recovery = recover_sum(
        masked=masked, bundles=market.bundles, reveals=reveals, participants=everyone, context=market.context(1)
    )
    assert recovery.invalid_shares == ((1, 4, "self"),)
    assert np.array_equal(recovery.total.view(np.int64), encode_model(market.models).sum(axis=0))


def test_too_few_reveals_cannot_unmask():
    market = Market(5, rounds=1, d=16, seed=4)
    everyone = set(range(5))
    reveals = market.reveals(1, everyone, set(), [0, 1])  # threshold is 3
    with pytest.raises(NotEnoughSharesError):
        recover_sum(
            masked=market.masked(1, sorted(everyone)),
            bundles=market.bundles,
            reveals=reveals,
            participants=everyone,
            context=market.context(1),
        )


def test_a_holder_refuses_a_share_its_dealer_did_not_commit_to():
    market = Market(3, rounds=2, d=16, seed=5)
    bundle = market.bundles[0]
    # the dealer commits to one polynomial for round 2's self seed and deals from another
    other = Market(3, rounds=2, d=16, seed=6).bundles[0]
    rounds = (
        bundle.rounds[0],
        bundle.rounds[1].model_copy(update={"self_commitments": other.rounds[1].self_commitments}),
    )
    market.bundles[0] = bundle.model_copy(update={"rounds": rounds})
    with pytest.raises(
        InvalidShareError, match="trainer 0 sealed trainer 2 a round 2 self share its commitments refuse"
    ):
        open_bundle_shares(market.bundles[0], holder=2, box_key=market.boxes[2], dealer=market.members[0])


def test_a_dealer_who_hands_one_holder_a_share_off_its_polynomial_is_caught_when_it_opens(monkeypatch):
    """Its holder sees the share is off the committed polynomial when it opens the bundle, not
    at the round's recovery, where subsets of the shares would rebuild different seeds."""
    honest_deal = feldman.deal

    def deal_off_by_one_for_holder_1(secret, threshold, holders, randomness):
        shares, commitments = honest_deal(secret, threshold, holders, randomness)
        return {**shares, 1: (shares[1] + 1) % feldman.ORDER}, commitments

    monkeypatch.setattr(feldman, "deal", deal_off_by_one_for_holder_1)
    market = Market(4, rounds=1, d=16, seed=7)
    with pytest.raises(InvalidShareError, match="trainer 0 sealed trainer 1 a round 1 mask share"):
        open_bundle_shares(market.bundles[0], holder=1, box_key=market.boxes[1], dealer=market.members[0])
    for holder in (0, 2, 3):
        open_bundle_shares(market.bundles[0], holder=holder, box_key=market.boxes[holder], dealer=market.members[0])


def test_shares_sealed_to_one_holder_do_not_open_for_another():
    market = Market(3, rounds=1, d=8)
    bundle = market.bundles[0]
    forwarded = bundle.model_copy(update={"sealed": (bundle.sealed[1], bundle.sealed[1], bundle.sealed[2])})
    with pytest.raises(DecryptionError):
        open_bundle_shares(forwarded, holder=0, box_key=market.boxes[0], dealer=market.members[0])


def test_a_reveal_of_both_seeds_of_one_dealer_is_refused():
    with pytest.raises(ValidationError, match="reveals both seeds of dealers"):
        ShareReveal(
            chain_id=CHAIN, market=MARKET, round=1, holder=0, self_shares={3: "00" * 32}, mask_shares={3: "11" * 32}
        )


def test_masks_are_bound_to_their_round():
    market = Market(3, rounds=2, d=32)
    one, two = market.masked(1, [0]), market.masked(2, [0])
    assert not np.array_equal(one[0], two[0])


# ---------------------------------------------------------------- on chain, through the board


def test_a_round_on_chain_rebuilds_the_survivors_mean_from_chain_and_store_alone(platform):
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, aggregator, trainers, spec = create_market(platform, trainers=5, rounds=2, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    for t in trainers:
        onchain.post_bundle(store, market, board, t, rounds=spec.rounds)
    assert board.keyed_mask(market.address) == 0b11111
    market.open_round(aggregator.account, str(store.put(b"global 1")), "0x" + "03" * 32)

    models = quantize(np.random.default_rng(7).normal(0, 0.3, size=(5, 650)).astype(np.float32))
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    keys = onchain.bundles(store, market, board, board.keyed_mask(market.address), 1)
    for i in (0, 1, 2, 4):  # trainer 3 masks nothing and drops
        raw = onchain.masked_bytes(models[i], party=trainers[i], index=i, keys=keys, context=context)
        market.submit(trainers[i].account, 1, str(store.put(raw)), "0x" + "22" * 32)
    # the aggregator leaves trainer 4 out, before anything is revealed
    market.exclude(aggregator.account, 1, {4: Rejection(reason=ExclusionReason.UNAVAILABLE, detail="test")})
    platform.chain.advance_time(spec.round_duration_s + 1)
    board.open_reveals(aggregator.account, market.address, 1)
    fixed = board.round_reveals(market.address, 1)
    assert (fixed.participants, fixed.survivors) == (0b11111, 0b00111)

    for holder in (0, 1, 3):  # a majority; the dropped trainer 3 still holds shares
        onchain.reveal(store, market, board, trainers[holder], 1)
    revealed = ShareReveal.model_validate_json(store.get(board.share_reveals(market.address, 1, 0)[0]))
    assert set(revealed.self_shares) == {0, 1, 2} and set(revealed.mask_shares) == {3, 4}
    with pytest.raises(ContractRevertError, match="AlreadyRevealed"):
        onchain.reveal(store, market, board, trainers[0], 1)

    mean, recovery = onchain.recover_round(store, market, board, 1, size=650)
    assert recovery.survivors == (0, 1, 2) and recovery.dropped == (3, 4)
    assert np.array_equal(mean, quantize(models[[0, 1, 2]].mean(axis=0)))  # the mean, on the grid

    # a masked model from another round does not pass for this one
    other = onchain.masked_bytes(models[0], party=trainers[0], index=0, keys=keys, context=market_round(context, 2))
    with pytest.raises(MalformedUpdateError, match="not for"):
        onchain.read_masked(other, size=650, context=context)
    # nor one masked in Z_2^64 where the market masks in BN254's field (a norm-bound market), or back
    own = onchain.masked_bytes(models[0], party=trainers[0], index=0, keys=keys, context=context)
    field = onchain.masked_bytes(models[0], party=trainers[0], index=0, keys=keys, context=context, ring=BN254)
    for raw, ring in ((own, BN254), (field, Z64)):
        with pytest.raises(MalformedUpdateError, match="not for"):
            onchain.read_masked(raw, size=650, context=context, ring=ring)
    assert len(onchain.read_masked(field, size=650, context=context, ring=BN254)) == 650


def market_round(context: MaskContext, round: int) -> MaskContext:
    return MaskContext(context.chain_id, context.market, round)


def test_a_holder_still_reveals_when_one_dealer_sealed_it_garbage(platform):
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, aggregator, trainers, spec = create_market(platform, trainers=3, rounds=1, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    for t in trainers[:2]:
        onchain.post_bundle(store, market, board, t, rounds=1)
    # trainer 2 deals a bundle whose share for trainer 0 is another holder's envelope
    honest = make_bundle(
        secret=onchain.secret_of(trainers[2], market.address),
        dealer=onchain.members(market)[2],
        box_key=trainers[2].box_key,
        members=onchain.members(market),
        rounds=1,
        chain_id=platform.chain.chain_id,
        market=market.address,
    )
    bad = honest.model_copy(update={"sealed": (honest.sealed[1], *honest.sealed[1:])})
    board.post_keys(trainers[2].account, market.address, str(store.put(bad.model_dump_json().encode())))
    market.open_round(aggregator.account, str(store.put(b"global 1")), "0x" + "03" * 32)
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    keys = onchain.bundles(store, market, board, board.keyed_mask(market.address), 1)
    for i in range(3):
        raw = onchain.masked_bytes(np.zeros(8), party=trainers[i], index=i, keys=keys, context=context)
        market.submit(trainers[i].account, 1, str(store.put(raw)), "0x" + "22" * 32)
    board.open_reveals(aggregator.account, market.address, 1)
    cid, _ = onchain.reveal(store, market, board, trainers[0], 1)
    assert set(ShareReveal.model_validate_json(store.get(cid)).self_shares) == {0, 1}


def _deal_bad_shares_to(holders: set[int], monkeypatch) -> None:
    """From now on, every dealing hands `holders` shares off the committed polynomial."""
    honest_deal = feldman.deal

    def deal(secret, threshold, to, randomness):
        shares, commitments = honest_deal(secret, threshold, to, randomness)
        return {h: (y + 1) % feldman.ORDER if h in holders else y for h, y in shares.items()}, commitments

    monkeypatch.setattr(feldman, "deal", deal)


def test_a_dealer_who_deals_a_majority_bad_shares_sits_out_and_the_round_still_rebuilds(platform, monkeypatch):
    """Without complaints such a dealer stops the round: its seeds cannot be rebuilt from the
    two good shares it dealt, whether it then submits or drops."""
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, aggregator, trainers, spec = create_market(platform, trainers=5, rounds=2, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    for t in trainers[:4]:
        onchain.post_bundle(store, market, board, t, rounds=spec.rounds)
    with monkeypatch.context() as patched:
        _deal_bad_shares_to({0, 1, 2}, patched)
        onchain.post_bundle(store, market, board, trainers[4], rounds=spec.rounds)
    assert [len(onchain.check_dealers(store, market, board, t)) for t in trainers] == [1, 1, 1, 0, 0]
    assert board.complained_mask(market.address, 4) == 0b00111
    assert onchain.answer_complaints(store, market, board, trainers[0]) == []  # nothing against trainer 0
    assert onchain.key_status(store, market, board, 1) == (  # trainer 4 never answers
        0b01111,
        {4: "trainer 0's complaint against its shares has no valid answer"},
    )

    market.open_round(aggregator.account, str(store.put(b"global 1")), "0x" + "03" * 32)
    models = quantize(np.random.default_rng(8).normal(0, 0.3, size=(5, 64)).astype(np.float32))
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    keys = onchain.bundles(store, market, board, onchain.participants(market, board, 1), 1)
    assert set(keys) == {0, 1, 2, 3}
    for i in range(4):
        raw = onchain.masked_bytes(models[i], party=trainers[i], index=i, keys=keys, context=context)
        market.submit(trainers[i].account, 1, str(store.put(raw)), "0x" + "22" * 32)
    platform.chain.advance_time(spec.round_duration_s + 1)
    board.open_reveals(aggregator.account, market.address, 1)
    for holder in range(5):
        onchain.reveal(store, market, board, trainers[holder], 1)
    mean, recovery = onchain.recover_round(store, market, board, 1, size=64)
    assert recovery.survivors == (0, 1, 2, 3) and recovery.dropped == ()
    assert np.array_equal(mean, quantize(models[:4].mean(axis=0)))


def test_a_dealer_answers_a_complaint_and_its_holder_reveals_the_answered_shares(platform):
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, aggregator, trainers, spec = create_market(platform, trainers=3, rounds=1, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    for t in trainers[:2]:
        onchain.post_bundle(store, market, board, t, rounds=1)
    everyone = onchain.members(market)
    honest = make_bundle(
        secret=onchain.secret_of(trainers[2], market.address),
        dealer=everyone[2],
        box_key=trainers[2].box_key,
        members=everyone,
        rounds=1,
        chain_id=platform.chain.chain_id,
        market=market.address,
    )
    # trainer 0's envelope is trainer 1's: it does not open for trainer 0, who complains
    garbled = honest.model_copy(update={"sealed": (honest.sealed[1], *honest.sealed[1:])})
    board.post_keys(trainers[2].account, market.address, str(store.put(garbled.model_dump_json().encode())))
    assert len(onchain.check_dealers(store, market, board, trainers[0])) == 1
    assert onchain.check_dealers(store, market, board, trainers[0]) == []  # once per dealer
    assert onchain.key_status(store, market, board, 1)[0] == 0b011
    # a false complaint against an honest dealer costs that dealer one answer
    board.complain(trainers[1].account, market.address, 0)
    assert [len(onchain.answer_complaints(store, market, board, t)) for t in trainers] == [1, 0, 1]
    assert onchain.answer_complaints(store, market, board, trainers[2]) == []
    assert onchain.key_status(store, market, board, 1)[0] == 0b111

    market.open_round(aggregator.account, str(store.put(b"global 1")), "0x" + "03" * 32)
    context = MaskContext(platform.chain.chain_id, market.address, 1)
    keys = onchain.bundles(store, market, board, onchain.participants(market, board, 1), 1)
    models = quantize(np.random.default_rng(9).normal(0, 0.3, size=(3, 32)).astype(np.float32))
    for i in range(3):
        raw = onchain.masked_bytes(models[i], party=trainers[i], index=i, keys=keys, context=context)
        market.submit(trainers[i].account, 1, str(store.put(raw)), "0x" + "22" * 32)
    board.open_reveals(aggregator.account, market.address, 1)
    cid, _ = onchain.reveal(store, market, board, trainers[0], 1)
    assert set(ShareReveal.model_validate_json(store.get(cid)).self_shares) == {0, 1, 2}  # 2's from its answer
    onchain.reveal(store, market, board, trainers[1], 1)
    mean, recovery = onchain.recover_round(store, market, board, 1, size=32)
    assert recovery.survivors == (0, 1, 2) and recovery.invalid_shares == ()
    assert np.array_equal(mean, quantize(models.mean(axis=0)))


def test_an_answer_whose_shares_fail_the_commitments_leaves_its_dealer_out(platform, monkeypatch):
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, _, trainers, _ = create_market(platform, trainers=3, rounds=1, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    for t in trainers[:2]:
        onchain.post_bundle(store, market, board, t, rounds=1)
    with monkeypatch.context() as patched:
        _deal_bad_shares_to({0}, patched)
        onchain.post_bundle(store, market, board, trainers[2], rounds=1)
        assert [len(onchain.check_dealers(store, market, board, t)) for t in trainers] == [1, 0, 0]
        # the dealer answers with the shares it dealt, which its commitments still refuse
        assert len(onchain.answer_complaints(store, market, board, trainers[2])) == 1
    assert board.answered_mask(market.address, 2) == 0b001
    assert onchain.key_status(store, market, board, 1)[0] == 0b011


def test_a_malformed_bundle_takes_no_part_and_says_why(platform):
    """A malformed bundle must not stop the rounds: every reader leaves the same dealer out, with
    the reason its excluded submission carries."""
    factory, _ = FactoryClient.deploy(platform.chain, party(platform, "deployer").account)
    market, _, _, trainers, _ = create_market(platform, trainers=4, rounds=2, factory=factory)
    board, store = factory.secure_aggregation(), platform.store
    onchain.post_bundle(store, market, board, trainers[0], rounds=2)
    onchain.post_bundle(store, market, board, trainers[1], rounds=1)  # too few rounds
    everyone = onchain.members(market)
    short = make_bundle(  # dealt to three of the four trainers
        secret=onchain.secret_of(trainers[2], market.address),
        dealer=everyone[2],
        box_key=trainers[2].box_key,
        members=everyone[:3],
        rounds=2,
        chain_id=platform.chain.chain_id,
        market=market.address,
    )
    board.post_keys(trainers[2].account, market.address, str(store.put(short.model_dump_json().encode())))
    board.post_keys(trainers[3].account, market.address, str(store.put(b"not a bundle")))
    usable, why = onchain.key_status(store, market, board, 1)
    assert usable == 0b0001
    assert why[1] == "its key bundle is unusable: it deals 1 of the market's 2 rounds"
    assert why[2] == "its key bundle is unusable: it deals no shares to trainers [3]"
    assert why[3].startswith("its key bundle bafk") and why[3].endswith("is not one")


def test_a_field_masked_model_is_stored_as_words_of_elements_and_read_back_only_as_such():
    from fedmarket.field import BN254_FIELD

    market = Market(3, rounds=1, d=5, seed=4)
    (y,) = market.masked(1, [0], BN254).values()
    words = BN254.to_words(y)
    assert words.shape == (5, 4) and words.dtype == np.uint64
    assert list(BN254.from_words(words, 5)) == list(y)
    assert all(0 <= v < BN254_FIELD for v in y)
    over = words.copy()
    over[2] = [0xFFFFFFFFFFFFFFFF] * 4  # 2^256 - 1: not an element
    with pytest.raises(MalformedUpdateError, match="not elements of BN254"):
        BN254.from_words(over, 5)
    for wrong, size in ((words, 6), (words.reshape(-1), 5), (np.zeros(5, dtype=np.uint64), 5)):
        with pytest.raises(MalformedUpdateError, match="field elements of 4 uint64 words"):
            BN254.from_words(wrong, size)
    with pytest.raises(MalformedUpdateError, match="5 uint64 words"):
        Z64.from_words(words, 5)
