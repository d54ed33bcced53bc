"""The secure-aggregation protocol as fedmarket runs it on chain (Bonawitz et al. 2017, section 4,
with the chain as the server's bulletin board).

1. Key bundle, once when training starts. For each round t, dealer u derives two seeds from its
   own secret: a mask seed (its round mask key pair) and a self-mask seed b_u, each a scalar of
   secp256k1. It shares both among the market's trainers (itself included) with Feldman's
   verifiable sharing (`feldman`), seals each holder's shares to the holder's registered X25519
   key, and publishes its round mask public keys with the commitments to its sharing
   polynomials. Each holder checks its shares against them when it opens the bundle.
   A holder whose shares fail complains on the board between rounds, and the dealer answers
   with that holder's shares in the clear; a dealer with a complaint no valid answer met before
   a round opened sits that round out (`onchain.bundles`), so no dealer can stop a round.
2. Masked model, each round: y_u = x_u + PRG(b_u) + pairwise streams with every other
   participant (`masks`).
3. Share reveal, each round, after the submissions are fixed on chain: each holder reveals its
   share of b_u for every survivor u and of the mask seed of every participant v that dropped,
   never both for one dealer.
4. Anyone rebuilds the seeds from `threshold` valid shares and removes the masks: the sum of the
   survivors' models, and nothing about any one of them.

Departures, and why:
- Every round's keys are dealt once, up front, instead of in two extra rounds of messages per
  round: the market's trainers are fixed when training starts, and each round then needs one
  extra step (the reveal), not three. A dropped trainer's rebuilt mask seed is that round's only.
- The survivor set is what the chain recorded, the same for everyone, so no consistency round
  is needed; the dealer's Feldman commitments make a wrong revealed share visible and
  attributable instead of signatures on each message, and make every share that passes them
  rebuild the one committed seed: a dealer cannot deal shares that rebuild different seeds.
- Bonawitz et al. take the dealt shares on trust. Here they are verifiable (Feldman 1987) with
  the complaint-and-answer step of Gennaro et al.'s distributed key generation (1999): without
  it one trainer could deal shares that stop every round it takes part in.
- The mask key pair is the mask seed itself on secp256k1 (ECDH there, not X25519), so the
  seed's first commitment is the mask public key and a rebuilt seed always gives it.
- Seeds derive from the trainer's own secret, market and round, so a restarted trainer reveals
  the same shares it dealt.
- Threshold floor(n / 2) + 1 of n holders: the aggregate is rebuilt while a majority of the
  trainers reveal, and fewer than that many colluding trainers with the aggregator learn nothing
  about the others' models beyond their sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedmarket.crypto import Envelope, SealContext, open_with_key, seal, submission_key
from fedmarket.errors import InvalidShareError, SecureAggregationError
from fedmarket.secagg import feldman
from fedmarket.secagg.masks import Z64, MaskContext, Ring, hkdf, pair_key, self_key
from fedmarket_schemas.secagg import KeyBundle, RoundKeys, ShareAnswer, ShareReveal

MASK, SELF = b"mask", b"self"
_SEED = feldman.SCALAR_BYTES


@dataclass(frozen=True)
class RoundSecrets:
    """A dealer's two seeds for one round: scalars, as 32 big-endian bytes."""

    mask_seed: bytes
    self_seed: bytes

    @property
    def mask_public(self) -> bytes:
        """The round's mask public key: the mask seed times the generator, its first commitment."""
        return feldman.commitment(int.from_bytes(self.mask_seed, "big"))


@dataclass(frozen=True)
class Trainer:
    """A market member as the chain lists it."""

    index: int
    address: str
    box_key: bytes  # its registered X25519 public key


@dataclass(frozen=True)
class Recovery:
    """A round's unmasked sum (ring elements) and what was found on the way."""

    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    invalid_shares: tuple[tuple[int, int, str], ...] = ()  # (holder, dealer, seed kind)
    self_seeds: Mapping[int, bytes] = field(default_factory=dict)  # rebuilt, by survivor
    mask_seeds: Mapping[int, bytes] = field(default_factory=dict)  # rebuilt, by dropped trainer


def round_secrets(secret: bytes, context: MaskContext) -> RoundSecrets:
    def seed(kind: bytes) -> bytes:
        return feldman.scalar_bytes(feldman.scalar(hkdf(secret, context.info(b"round/" + kind))))

    return RoundSecrets(seed(MASK), seed(SELF))


def threshold_for(holders: int) -> int:
    return holders // 2 + 1


def make_bundle(
    *,
    secret: bytes,
    dealer: Trainer,
    box_key: X25519PrivateKey,
    members: list[Trainer],
    rounds: int,
    chain_id: int,
    market: str,
) -> KeyBundle:
    """Deal every round's seeds of `dealer` among `members` (the market's active trainers)."""
    holders = tuple(sorted(m.index for m in members))
    threshold = threshold_for(len(holders))
    plain = {h: bytearray() for h in holders}
    keys = []
    for t in range(1, rounds + 1):
        sharing = _deal_round(secret, MaskContext(chain_id, market, t), threshold, holders)
        for h in holders:
            plain[h] += b"".join(feldman.scalar_bytes(sharing[kind][0][h]) for kind in (MASK, SELF))
        keys.append(
            RoundKeys(
                mask_commitments=tuple(c.hex() for c in sharing[MASK][1]),
                self_commitments=tuple(c.hex() for c in sharing[SELF][1]),
            )
        )
    by_index = {m.index: m for m in members}
    context = SealContext(chain_id, market, 0, dealer.address)
    sealed = tuple(
        seal(bytes(plain[h]), sender=box_key, recipient=by_index[h].box_key, context=context).hex() for h in holders
    )
    return KeyBundle(
        chain_id=chain_id,
        market=market,
        dealer=dealer.index,
        threshold=threshold,
        holders=holders,
        rounds=tuple(keys),
        sealed=sealed,
    )


def _deal_round(
    secret: bytes, context: MaskContext, threshold: int, holders: tuple[int, ...]
) -> dict[bytes, tuple[dict[int, int], tuple[bytes, ...]]]:
    """Seed kind -> (shares by holder, commitments) of the dealer's two seeds for one round."""
    seeds = round_secrets(secret, context)
    return {
        kind: feldman.deal(int.from_bytes(seed, "big"), threshold, holders, hkdf(secret, context.info(b"poly/" + kind)))
        for kind, seed in ((MASK, seeds.mask_seed), (SELF, seeds.self_seed))
    }


def answer_complaint(*, secret: bytes, bundle: KeyBundle, holder: int) -> ShareAnswer:
    """The dealer's answer to `holder`'s complaint: the shares it dealt that holder, in the clear
    (dealt again from its secret: the sealed copy opens only for the holder)."""
    shares = []
    for t in range(1, len(bundle.rounds) + 1):
        sharing = _deal_round(secret, MaskContext(bundle.chain_id, bundle.market, t), bundle.threshold, bundle.holders)
        shares.append(tuple(feldman.scalar_bytes(sharing[kind][0][holder]).hex() for kind in (MASK, SELF)))
    return ShareAnswer(
        chain_id=bundle.chain_id, market=bundle.market, dealer=bundle.dealer, holder=holder, shares=tuple(shares)
    )


def answered_shares(answer: ShareAnswer, bundle: KeyBundle, holder: int) -> list[tuple[bytes, bytes]]:
    """The holder's shares from the dealer's answer, per round from round 1, each checked against
    the dealer's commitments (InvalidShareError naming the first that fails)."""
    if (answer.chain_id, answer.market.lower(), answer.dealer, answer.holder) != (
        bundle.chain_id,
        bundle.market.lower(),
        bundle.dealer,
        holder,
    ):
        raise InvalidShareError(f"trainer {bundle.dealer}'s answer to trainer {holder} is for another complaint")
    if len(answer.shares) != len(bundle.rounds):
        raise InvalidShareError(f"trainer {bundle.dealer}'s answer to trainer {holder} has {len(answer.shares)} rounds")
    pairs = [(bytes.fromhex(mask), bytes.fromhex(own)) for mask, own in answer.shares]
    return _checked(bundle, holder, pairs, "answered")


def _checked(bundle: KeyBundle, holder: int, pairs: list[tuple[bytes, bytes]], how: str) -> list[tuple[bytes, bytes]]:
    """`pairs` (mask share, self share per round), once every share passes the dealer's
    commitments; InvalidShareError naming the first that does not."""
    for t, (keys, pair) in enumerate(zip(bundle.rounds, pairs, strict=True), start=1):
        for kind, share in zip((MASK, SELF), pair, strict=True):
            if not share_is_valid(keys, kind, holder, share):
                raise InvalidShareError(
                    f"trainer {bundle.dealer} {how} trainer {holder} a round {t} {kind.decode()} share"
                    " its commitments refuse"
                )
    return pairs


def bundle_defect(
    bundle: KeyBundle, *, chain_id: int, market: str, dealer: int, holders: set[int], rounds: int
) -> str | None:
    """Why a posted bundle cannot take part in the market's rounds, or None. Everything checked
    is public, so every reader leaves out the same bundles: it must be this dealer's, for this
    market, deal every round, to at least the market's active trainers (`holders`) with a
    majority threshold, under commitments that are curve points."""
    if (bundle.chain_id, bundle.market.lower(), bundle.dealer) != (chain_id, market.lower(), dealer):
        return f"it is trainer {bundle.dealer}'s bundle for {bundle.market} on chain {bundle.chain_id}"
    if len(bundle.rounds) < rounds:
        return f"it deals {len(bundle.rounds)} of the market's {rounds} rounds"
    if missing := holders - set(bundle.holders):
        return f"it deals no shares to trainers {sorted(missing)}"
    if bundle.threshold != threshold_for(len(bundle.holders)):
        return f"its threshold {bundle.threshold} is not a majority of its {len(bundle.holders)} holders"
    for t, keys in enumerate(bundle.rounds, start=1):
        if not all(feldman.is_point(bytes.fromhex(c)) for c in keys.mask_commitments + keys.self_commitments):
            return f"its round {t} commitments are not all curve points"
    return None


def open_bundle_shares(
    bundle: KeyBundle, *, holder: int, box_key: X25519PrivateKey, dealer: Trainer
) -> list[tuple[bytes, bytes]]:
    """The holder's (mask share, self share) of the dealer's seeds, per round from round 1.
    DecryptionError when the sealed shares do not open for this holder; InvalidShareError when a
    share is not on the polynomial the dealer's commitments fix."""
    if holder not in bundle.holders:
        raise SecureAggregationError(f"trainer {holder} holds no share of trainer {bundle.dealer}'s seeds")
    position = bundle.holders.index(holder)
    envelope = Envelope.parse(bytes.fromhex(bundle.sealed[position]))
    key = submission_key(envelope, recipient=box_key, sender=dealer.box_key)
    plain = open_with_key(envelope, key, SealContext(bundle.chain_id, bundle.market, 0, dealer.address))
    if len(plain) != 2 * _SEED * len(bundle.rounds):
        raise InvalidShareError(f"trainer {bundle.dealer} sealed {len(plain)} bytes of shares to trainer {holder}")
    at = [2 * _SEED * t for t in range(len(bundle.rounds))]
    return _checked(bundle, holder, [(plain[a : a + _SEED], plain[a + _SEED : a + 2 * _SEED]) for a in at], "sealed")


def share_is_valid(keys: RoundKeys, kind: bytes, holder: int, share: bytes) -> bool:
    """Whether `share` is holder `holder`'s share of the dealer's `kind` seed for that round."""
    commitments = keys.mask_commitments if kind == MASK else keys.self_commitments
    return len(share) == _SEED and feldman.verify(
        int.from_bytes(share, "big"), holder, tuple(bytes.fromhex(c) for c in commitments)
    )


def mask_model(
    model: np.ndarray,
    *,
    secrets: RoundSecrets,
    me: int,
    peers: dict[int, bytes],
    context: MaskContext,
    ring: Ring = Z64,
) -> np.ndarray:
    """y = x + PRG(b) + sum over the other participants v of s(me, v) PRG(k_me,v), in `ring`;
    `peers`: each participant's round mask public key (this trainer's own is skipped)."""
    masked = ring.encode(model)
    ring.apply(masked, self_key(secrets.self_seed, context), +1)
    for v, public in sorted(peers.items()):
        if v != me:
            ring.apply(masked, pair_key(secrets.mask_seed, public, context), +1 if me < v else -1)
    return masked


def make_reveal(
    *,
    held: dict[int, tuple[bytes, bytes]],
    holder: int,
    survivors: set[int],
    dropped: set[int],
    context: MaskContext,
) -> ShareReveal:
    """The holder's reveal for one round: `held` maps dealer -> (mask share, self share) for that
    round; survivors get their self share revealed, dropped participants their mask share."""
    if survivors & dropped:
        raise SecureAggregationError(f"trainers {sorted(survivors & dropped)} cannot both survive and drop")
    return ShareReveal(
        chain_id=context.chain_id,
        market=context.market,
        round=context.round,
        holder=holder,
        self_shares={u: held[u][1].hex() for u in sorted(survivors) if u in held},
        mask_shares={v: held[v][0].hex() for v in sorted(dropped) if v in held},
    )


def recover_sum(
    *,
    masked: dict[int, np.ndarray],
    bundles: dict[int, KeyBundle],
    reveals: list[ShareReveal],
    participants: set[int],
    context: MaskContext,
    ring: Ring = Z64,
) -> Recovery:
    """The sum of the survivors' encoded models (in `ring`) from their masked models, the
    participants' bundles and the holders' reveals. A revealed share that its dealer's commitments
    refuse is left out and reported; NotEnoughSharesError when fewer than the threshold pass."""
    survivors, dropped = set(masked), participants - set(masked)
    if not survivors <= participants:
        raise SecureAggregationError(f"trainers {sorted(survivors - participants)} sent masks without keys")
    t = context.round
    invalid: list[tuple[int, int, str]] = []

    def rebuild(dealer: int, kind: bytes) -> bytes:
        bundle = bundles[dealer]
        keys = bundle.rounds[t - 1]
        valid: dict[int, int] = {}
        for reveal in reveals:
            revealed = (reveal.mask_shares if kind == MASK else reveal.self_shares).get(dealer)
            if revealed is None or reveal.holder not in bundle.holders:
                continue
            share = bytes.fromhex(revealed)
            if share_is_valid(keys, kind, reveal.holder, share):
                valid[reveal.holder] = int.from_bytes(share, "big")
            else:
                invalid.append((reveal.holder, dealer, kind.decode()))
        # shares the commitments accept lie on one polynomial: they rebuild the committed seed
        return feldman.scalar_bytes(feldman.combine(valid, bundle.threshold))

    total = ring.zeros(next(iter(masked.values())).size if masked else 0)
    self_seeds, mask_seeds = {}, {}
    for u in sorted(survivors):
        ring.add(total, masked[u])
        self_seeds[u] = rebuild(u, SELF)
        ring.apply(total, self_key(self_seeds[u], context), -1)
    for v in sorted(dropped):
        own = mask_seeds[v] = rebuild(v, MASK)  # its mask private key, whose public key is its first commitment
        for u in sorted(survivors):
            peer = bytes.fromhex(bundles[u].rounds[t - 1].mask_public_key)
            ring.apply(total, pair_key(own, peer, context), -1 if u < v else +1)
    return Recovery(total, tuple(sorted(survivors)), tuple(sorted(dropped)), tuple(invalid), self_seeds, mask_seeds)
