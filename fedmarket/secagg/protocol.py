"""The secure-aggregation protocol as fedmarket runs it on chain (Bonawitz et al. 2017, section 4,
with the chain as the server's bulletin board).

1. Key bundle, once when training starts. For each round t, dealer u derives two 16-byte seeds
   from its own secret: a mask seed (its round mask key pair) and a self-mask seed b_u. It
   Shamir-shares both among the market's trainers (itself included), seals each holder's shares
   to the holder's registered X25519 key, and publishes its round mask public keys with a hash of
   each seed and of each share.
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
  is needed; hashes of the shares, published by the dealer, make a wrong revealed share visible
  and attributable instead of signatures on each message.
- Seeds derive from the trainer's own secret, market and round, so a restarted trainer reveals
  the same shares it dealt.
- Threshold floor(n / 2) + 1 of n holders: the aggregate is rebuilt while a majority of the
  trainers reveal, and fewer than that many colluding trainers with the aggregator learn nothing
  about the others' models beyond their sum.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedmarket.crypto import Envelope, SealContext, open_with_key, public_key_bytes, seal, submission_key
from fedmarket.errors import InvalidShareError, SecureAggregationError
from fedmarket.secagg import shamir
from fedmarket.secagg.masks import MaskContext, apply, encode_model, hkdf, pair_key, self_key
from fedmarket_schemas.secagg import KeyBundle, RoundKeys, ShareReveal

MASK, SELF = b"mask", b"self"
_SEED = shamir.SEED_BYTES


@dataclass(frozen=True)
class RoundSecrets:
    """A dealer's two seeds for one round."""

    mask_seed: bytes
    self_seed: bytes

    @property
    def mask_key(self) -> X25519PrivateKey:
        return mask_key_from_seed(self.mask_seed)

    @property
    def mask_public(self) -> bytes:
        return public_key_bytes(self.mask_key)


@dataclass(frozen=True)
class Trainer:
    """A market member as the chain lists it."""

    index: int
    address: str
    box_key: bytes  # its registered X25519 public key


@dataclass(frozen=True)
class Recovery:
    """A round's unmasked sum (ring words) and what was found on the way."""

    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    invalid_shares: tuple[tuple[int, int, str], ...] = ()  # (holder, dealer, seed kind)


def mask_key_from_seed(seed: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(hkdf(seed, b"fedmarket/secagg/v1/mask-key"))


def round_secrets(secret: bytes, context: MaskContext) -> RoundSecrets:
    raw = hkdf(secret, context.info(b"round"))
    return RoundSecrets(raw[:_SEED], raw[_SEED:])


def threshold_for(holders: int) -> int:
    return holders // 2 + 1


def seed_hash(kind: bytes, dealer: int, round: int, seed: bytes) -> str:
    return _digest(b"seed/" + kind, dealer, round, seed)


def share_hash(kind: bytes, dealer: int, holder: int, round: int, share: bytes) -> str:
    return _digest(b"share/" + kind, dealer, round, struct.pack(">I", holder) + share)


def _digest(label: bytes, dealer: int, round: int, payload: bytes) -> str:
    data = b"fedmarket/secagg/v1/" + label + struct.pack(">II", dealer, round) + payload
    return hashlib.sha256(data).hexdigest()


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
        seeds = round_secrets(secret, MaskContext(chain_id, market, t))
        mask_shares = shamir.split(seeds.mask_seed, threshold, holders)
        self_shares = shamir.split(seeds.self_seed, threshold, holders)
        for h in holders:
            plain[h] += mask_shares[h] + self_shares[h]
        keys.append(
            RoundKeys(
                mask_public_key=seeds.mask_public.hex(),
                mask_seed_hash=seed_hash(MASK, dealer.index, t, seeds.mask_seed),
                self_seed_hash=seed_hash(SELF, dealer.index, t, seeds.self_seed),
                mask_share_hashes=tuple(share_hash(MASK, dealer.index, h, t, mask_shares[h]) for h in holders),
                self_share_hashes=tuple(share_hash(SELF, dealer.index, h, t, self_shares[h]) for h in holders),
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


def open_bundle_shares(
    bundle: KeyBundle, *, holder: int, box_key: X25519PrivateKey, dealer: Trainer
) -> list[tuple[bytes, bytes]]:
    """The holder's (mask share, self share) of the dealer's seeds, per round from round 1.
    DecryptionError when the sealed shares do not open for this holder; InvalidShareError when a
    share is not the one the dealer's bundle hashes."""
    if holder not in bundle.holders:
        raise SecureAggregationError(f"trainer {holder} holds no share of trainer {bundle.dealer}'s seeds")
    position = bundle.holders.index(holder)
    envelope = Envelope.parse(bytes.fromhex(bundle.sealed[position]))
    key = submission_key(envelope, recipient=box_key, sender=dealer.box_key)
    plain = open_with_key(envelope, key, SealContext(bundle.chain_id, bundle.market, 0, dealer.address))
    if len(plain) != 2 * _SEED * len(bundle.rounds):
        raise InvalidShareError(f"trainer {bundle.dealer} sealed {len(plain)} bytes of shares to trainer {holder}")
    shares = []
    for t, keys in enumerate(bundle.rounds, start=1):
        at = 2 * _SEED * (t - 1)
        mask_share, self_share = plain[at : at + _SEED], plain[at + _SEED : at + 2 * _SEED]
        if (
            share_hash(MASK, bundle.dealer, holder, t, mask_share) != keys.mask_share_hashes[position]
            or share_hash(SELF, bundle.dealer, holder, t, self_share) != keys.self_share_hashes[position]
        ):
            raise InvalidShareError(
                f"trainer {bundle.dealer} sealed round {t} shares to trainer {holder} it did not hash"
            )
        shares.append((mask_share, self_share))
    return shares


def mask_model(
    model: np.ndarray, *, secrets: RoundSecrets, me: int, peers: dict[int, bytes], context: MaskContext
) -> np.ndarray:
    """y = x + PRG(b) + sum over the other participants v of s(me, v) PRG(k_me,v), as uint64;
    `peers`: each participant's round mask public key (this trainer's own is skipped)."""
    masked = encode_model(model).view(np.uint64)
    apply(masked, self_key(secrets.self_seed, context), +1)
    own = secrets.mask_key
    for v, public in sorted(peers.items()):
        if v != me:
            apply(masked, pair_key(own, public, context), +1 if me < v else -1)
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
) -> Recovery:
    """The sum of the survivors' encoded models (uint64 ring words) from their masked models, the
    participants' bundles and the holders' reveals. A revealed share that its dealer's hash
    contradicts is left out and reported; a seed rebuilt from valid shares that contradicts its
    dealer's hash is the dealer's fault (InvalidShareError); NotEnoughSharesError below the
    threshold."""
    survivors, dropped = set(masked), participants - set(masked)
    if not survivors <= participants:
        raise SecureAggregationError(f"trainers {sorted(survivors - participants)} sent masks without keys")
    t = context.round
    invalid: list[tuple[int, int, str]] = []

    def rebuild(dealer: int, kind: bytes) -> bytes:
        bundle = bundles[dealer]
        keys = bundle.rounds[t - 1]
        hashes = keys.mask_share_hashes if kind == MASK else keys.self_share_hashes
        valid: dict[int, bytes] = {}
        for reveal in reveals:
            revealed = (reveal.mask_shares if kind == MASK else reveal.self_shares).get(dealer)
            if revealed is None or reveal.holder not in bundle.holders:
                continue
            share = bytes.fromhex(revealed)
            if share_hash(kind, dealer, reveal.holder, t, share) == hashes[bundle.holders.index(reveal.holder)]:
                valid[reveal.holder] = share
            else:
                invalid.append((reveal.holder, dealer, kind.decode()))
        seed = shamir.combine(valid, bundle.threshold)
        if seed_hash(kind, dealer, t, seed) != (keys.mask_seed_hash if kind == MASK else keys.self_seed_hash):
            raise InvalidShareError(
                f"trainer {dealer}'s round {t} {kind.decode()} seed shares were dealt inconsistently"
            )
        return seed

    total = np.zeros(next(iter(masked.values())).size if masked else 0, dtype=np.uint64)
    for u in sorted(survivors):
        total += masked[u]
        apply(total, self_key(rebuild(u, SELF), context), -1)
    for v in sorted(dropped):
        own = mask_key_from_seed(rebuild(v, MASK))
        if public_key_bytes(own).hex() != bundles[v].rounds[t - 1].mask_public_key:
            raise InvalidShareError(f"trainer {v}'s round {t} mask seed does not give its published mask key")
        for u in sorted(survivors):
            peer = bytes.fromhex(bundles[u].rounds[t - 1].mask_public_key)
            apply(total, pair_key(own, peer, context), -1 if u < v else +1)
    return Recovery(total, tuple(sorted(survivors)), tuple(sorted(dropped)), tuple(invalid))
