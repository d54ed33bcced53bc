"""The secure-aggregation protocol against a market, its board and the content store: what each
trainer publishes and what anyone reads back to rebuild a round's aggregate (the aggregator, and
`fedmarket audit` after it).

A masked model is stored as safetensors: one uint64 tensor "masked" (a word per element in
Z_2^64, four per element of BN254's field in a norm-bound market: `masks.ring_for`) and metadata
naming the format, market and round, so that bytes from another ring, market or round are
refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedmarket.chain import BoardClient, FactoryClient, MarketClient, TxResult
from fedmarket.errors import (
    DecryptionError,
    MalformedUpdateError,
    SecureAggregationError,
    StoreError,
    StoreUnavailableError,
)
from fedmarket.fixed_point import quantize
from fedmarket.identity import Party
from fedmarket.ml.updates import header_metadata
from fedmarket.secagg import feldman
from fedmarket.secagg.dleq import PointReveal, reveal_point, verify_point
from fedmarket.secagg.masks import Z64, MaskContext, Ring, decode_sum, pair_key
from fedmarket.secagg.protocol import (
    Recovery,
    Trainer,
    answer_complaint,
    answered_shares,
    bundle_defect,
    make_bundle,
    make_reveal,
    mask_model,
    open_bundle_shares,
    recover_sum,
    round_secrets,
)
from fedmarket.store import ContentStore
from fedmarket.zk import POINT_BYTES
from fedmarket_schemas.secagg import KeyBundle, PairPoint, ShareAnswer, ShareReveal
from fedmarket_schemas.trainer import PrivacySpent

NORM_PROOF = "norm_proof"
PAIR_COMMITMENTS, PAIR_PEERS = "pair_commitments", "pair_peers"
POINT_LABEL = b"pair-point"  # what a pair point's proof is bound to, with chain, market and round


def board_of(market: MarketClient) -> BoardClient:
    """The secure-aggregation board of the factory that made `market`, read at the market's block."""
    return FactoryClient(market.chain, market.factory()).secure_aggregation().at(market.block)


def participants(market: MarketClient, board: BoardClient, round: int) -> int:
    """Mask of the trainers whose keys count in `round`: as the board fixed them when the round's
    reveals opened, else every trainer who posted keys for it (keys are refused mid-round)."""
    fixed = board.round_reveals(market.address, round)
    if fixed.open:
        return fixed.participants
    posted = board.key_bundles(market.address, market.creation_block())
    return sum(1 << index for index, (_, first) in posted.items() if first <= round)


def members(market: MarketClient) -> list[Trainer]:
    """The market's active trainers with their registered keys, by registration index."""
    addresses = market.trainers()
    active = market.active_mask()
    chosen = [(i, a) for i, a in enumerate(addresses) if active >> i & 1]
    keys = market.encryption_keys([a for _, a in chosen])
    return [Trainer(i, a, keys[a]) for i, a in chosen]


def secret_of(party: Party, market: str) -> bytes:
    """The trainer's secure-aggregation secret for `market`: derived, so a restart deals the same."""
    return party.derived_secret(b"fedmarket/secagg/" + bytes.fromhex(market.removeprefix("0x").lower()))


def post_bundle(
    store: ContentStore,
    market: MarketClient,
    board: BoardClient,
    party: Party,
    rounds: int,
    tamper: Callable[[KeyBundle], KeyBundle] | None = None,
) -> tuple[str, TxResult]:
    """Deal this trainer's seeds for every round among the market's active trainers and post them:
    the bundle's CID and the transaction. `tamper`: what an attacker posts instead (simulation)."""
    everyone = members(market)
    me = next(m for m in everyone if m.address == party.address)
    bundle = make_bundle(
        secret=secret_of(party, market.address),
        dealer=me,
        box_key=party.box_key,
        members=everyone,
        rounds=rounds,
        chain_id=market.chain.chain_id,
        market=market.address,
    )
    if tamper is not None:
        bundle = tamper(bundle)
    cid = str(store.put(bundle.model_dump_json().encode()))
    return cid, board.post_keys(party.account, market.address, cid)


def bundles(
    store: ContentStore, market: MarketClient, board: BoardClient, participants: int, round: int
) -> dict[int, KeyBundle]:
    """The key bundles of the trainers in the `participants` mask that take part in `round`
    (`sorted_keys`)."""
    return sorted_keys(store, market, board, participants, round)[0]


def sorted_keys(
    store: ContentStore, market: MarketClient, board: BoardClient, participants: int, round: int
) -> tuple[dict[int, KeyBundle], dict[int, str]]:
    """The key bundles of the trainers in the `participants` mask that take part in `round`, and
    why each other one does not: a bundle unreadable or with a defect (`protocol.bundle_defect`),
    or a complaint that counts for `round` and that no valid answer counting for it met. All of it
    is public, so every reader leaves out the same dealers."""
    posted = board.key_bundles(market.address, market.creation_block())
    holders = {m.index for m in members(market)}
    out, why = {}, {}
    for index, (cid, _) in posted.items():
        if not participants >> index & 1:
            continue
        if (bundle := _read_bundle(store, cid)) is None:
            why[index] = f"its key bundle {cid} is not one"
            continue
        defect = bundle_defect(
            bundle,
            chain_id=market.chain.chain_id,
            market=market.address,
            dealer=index,
            holders=holders,
            rounds=market.round_count(),
        )
        if defect is None:
            out[index] = bundle
        else:
            why[index] = f"its key bundle is unusable: {defect}"
    for dealer, holder in unmet_complaints(store, market, board, out, round).items():
        del out[dealer]
        why[dealer] = f"trainer {holder}'s complaint against its shares has no valid answer"
    return out, why


def _read_bundle(store: ContentStore, cid: str) -> KeyBundle | None:
    try:
        return KeyBundle.model_validate_json(store.get(cid))
    except StoreUnavailableError:
        raise  # no verdict about the dealer while the store is away
    except (StoreError, ValidationError):
        return None


def unmet_complaints(
    store: ContentStore, market: MarketClient, board: BoardClient, keys: dict[int, KeyBundle], round: int
) -> dict[int, int]:
    """The dealers among `keys` with a complaint counting for `round` that no answer counting for
    it meets with shares its commitments accept: dealer -> the first such complainer."""
    answers = board.answers(market.address, market.creation_block())
    out: dict[int, int] = {}
    for (dealer, holder), first in sorted(board.complaints(market.address, market.creation_block()).items()):
        if dealer in keys and first <= round and dealer not in out:
            answer = answers.get((dealer, holder))
            if answer is None or answer[1] > round or _answer(store, answer[0], keys[dealer], holder) is None:
                out[dealer] = holder
    return out


def _answer(store: ContentStore, cid: str, bundle: KeyBundle, holder: int) -> list[tuple[bytes, bytes]] | None:
    """The holder's shares from the dealer's answer under `cid`, or None if they fail."""
    try:
        return answered_shares(ShareAnswer.model_validate_json(store.get(cid)), bundle, holder)
    except StoreUnavailableError:
        raise
    except (StoreError, ValidationError, SecureAggregationError):
        return None


def key_status(store: ContentStore, market: MarketClient, board: BoardClient, round: int) -> tuple[int, dict[int, str]]:
    """Mask of the trainers whose keys take part in `round` (every trainer masks against exactly
    these, and only these can be survivors), and why each trainer that posted keys for it and is
    not among them is left out (`sorted_keys`)."""
    keys, why = sorted_keys(store, market, board, participants(market, board, round), round)
    return sum(1 << i for i in keys), why


def check_dealers(store: ContentStore, market: MarketClient, board: BoardClient, party: Party) -> list[TxResult]:
    """Open this holder's shares of every posted bundle and complain against each dealer whose
    shares do not open or fail its commitments (once per dealer): the complaints' transactions."""
    by_index = {m.index: m for m in members(market)}
    me = next(m for m in by_index.values() if m.address == party.address)
    keys = bundles(store, market, board, board.keyed_mask(market.address), round=0)  # complaints aside
    sent = []
    for dealer, bundle in keys.items():
        if dealer == me.index or board.complained_mask(market.address, dealer) >> me.index & 1:
            continue
        try:
            open_bundle_shares(bundle, holder=me.index, box_key=party.box_key, dealer=by_index[dealer])
        except (DecryptionError, SecureAggregationError):
            sent.append(board.complain(party.account, market.address, dealer))
    return sent


def answer_complaints(store: ContentStore, market: MarketClient, board: BoardClient, party: Party) -> list[TxResult]:
    """Answer every complaint against this dealer that it has not answered: the transactions."""
    me = market.trainers().index(party.address)
    posted = board.key_bundles(market.address, market.creation_block())
    pending = board.complained_mask(market.address, me) & ~board.answered_mask(market.address, me)
    if not pending or me not in posted:
        return []
    bundle = _read_bundle(store, posted[me][0])
    if bundle is None:
        raise SecureAggregationError(f"trainer {party.address}'s own key bundle {posted[me][0]} cannot be read")
    sent = []
    for holder in (h for h in bundle.holders if pending >> h & 1):
        answer = answer_complaint(secret=secret_of(party, market.address), bundle=bundle, holder=holder)
        cid = str(store.put(answer.model_dump_json().encode()))
        sent.append(board.answer(party.account, market.address, holder, cid))
    return sent


def masked_bytes(
    model: np.ndarray,
    *,
    party: Party,
    index: int,
    keys: dict[int, KeyBundle],
    context: MaskContext,
    norm_proof: str | None = None,
    privacy: PrivacySpent | None = None,
    ring: Ring = Z64,
    commit_mask: Callable[[np.ndarray], bytes] | None = None,
) -> bytes:
    """This trainer's masked model for `context`'s round in `ring`, with every participant's keys;
    `norm_proof`: its norm-bound proof file, stored beside it under the same CID; `privacy`: in a
    DP-SGD task, what it has spent, in the header as a plain update reports it (`"dp"`);
    `commit_mask`: in a norm-bound market, the KZG commitment to a stream, stored for each pair's
    stream so that its masked model can be checked on its own (`exclusions.masked_cheaters`)."""
    peers = {i: bytes.fromhex(b.rounds[context.round - 1].mask_public_key) for i, b in keys.items()}
    secrets = round_secrets(secret_of(party, context.market), context)
    masked = mask_model(model, secrets=secrets, me=index, peers=peers, context=context, ring=ring)
    tensors = {"masked": ring.to_words(masked)}
    if norm_proof is not None:
        tensors[NORM_PROOF] = np.frombuffer(norm_proof.encode(), dtype=np.uint8)
    metadata = {"format": ring.format, "market": context.market.lower(), "round": str(context.round)}
    if privacy is not None:
        metadata["dp"] = privacy.model_dump_json()
    if commit_mask is not None:
        others = [v for v in sorted(peers) if v != index]
        claims = [commit_mask(ring.stream(pair_key(secrets.mask_seed, peers[v], context), model.size)) for v in others]
        tensors[PAIR_COMMITMENTS] = np.frombuffer(b"".join(claims), dtype=np.uint8).reshape(len(others), POINT_BYTES)
        metadata[PAIR_PEERS] = json.dumps(others)
    return st_save(tensors, metadata=metadata)


def read_pair_commitments(raw: bytes) -> dict[int, bytes]:
    """Peer -> the commitment to the pair's mask stream stored with a masked model
    (MalformedUpdateError if there are none, or they are malformed)."""
    try:
        peers = json.loads(header_metadata(raw)[PAIR_PEERS])
        tensor = st_load(raw)[PAIR_COMMITMENTS]
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise MalformedUpdateError(
            f"no commitments to its pair masks are stored with the masked model: {exc}"
        ) from None
    valid = isinstance(peers, list) and all(type(v) is int and v >= 0 for v in peers) and len(set(peers)) == len(peers)
    if not valid or tensor.dtype != np.uint8 or tensor.shape != (len(peers), POINT_BYTES):
        raise MalformedUpdateError("the commitments to its pair masks are malformed")
    return {v: tensor[i].tobytes() for i, v in enumerate(peers)}


def read_norm_proof(raw: bytes) -> str:
    """The norm-bound proof file stored with a masked model (MalformedUpdateError if none)."""
    try:
        tensor = st_load(raw)[NORM_PROOF]
        return tensor.astype(np.uint8).tobytes().decode()
    except (SafetensorError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise MalformedUpdateError(f"no norm proof is stored with the masked model: {exc}") from None


def read_masked(raw: bytes, *, size: int, context: MaskContext, ring: Ring = Z64) -> np.ndarray:
    """A stored masked model for `context`'s round in `ring` (MalformedUpdateError otherwise)."""
    try:
        tensor = st_load(raw)["masked"]
    except (SafetensorError, KeyError, ValueError) as exc:
        raise MalformedUpdateError(f"not a masked model: {exc}") from None
    # DP: checked by the task's terms; pair commitments: by `read_pair_commitments`
    metadata = {k: v for k, v in header_metadata(raw).items() if k not in ("dp", PAIR_PEERS)}
    expected = {"format": ring.format, "market": context.market.lower(), "round": str(context.round)}
    if metadata != expected:
        raise MalformedUpdateError(f"a masked model for {metadata}, not for {expected}")
    return ring.from_words(tensor, size)


def reveal(
    store: ContentStore, market: MarketClient, board: BoardClient, party: Party, round: int
) -> tuple[str, TxResult]:
    """Reveal this holder's shares for `round` as the board fixed its survivors, and post them: the
    reveal's CID and the transaction."""
    fixed = board.round_reveals(market.address, round)
    if not fixed.open:
        raise SecureAggregationError(f"reveals of round {round} are not open")
    by_index = {m.index: m for m in members(market)}
    me = next(m for m in by_index.values() if m.address == party.address)
    keys = bundles(store, market, board, fixed.participants, round)
    answers = board.answers(market.address, market.creation_block())
    held = {}
    for dealer, bundle in keys.items():
        try:
            shares = open_bundle_shares(bundle, holder=me.index, box_key=party.box_key, dealer=by_index[dealer])
        except (DecryptionError, SecureAggregationError):
            # a dealer that takes part answered this holder's complaint; else it sealed it nothing usable
            answer = answers.get((dealer, me.index))
            if answer is None or (shares := _answer(store, answer[0], bundle, me.index)) is None:
                continue
        held[dealer] = shares[round - 1]
    survivors = {i for i in keys if fixed.survivors >> i & 1}
    context = MaskContext(market.chain.chain_id, market.address, round)
    shares = make_reveal(
        held=held, holder=me.index, survivors=survivors, dropped=set(keys) - survivors, context=context
    )
    if points := disputed_points(store, market, board, party, me.index, survivors, context):
        shares = shares.model_copy(update={"pair_points": points})
    cid = str(store.put(shares.model_dump_json().encode()))
    return cid, board.reveal_shares(party.account, market.address, round, cid)


def read_reveals(store: ContentStore, market: MarketClient, board: BoardClient, round: int) -> list[ShareReveal]:
    """The holders' share reveals of `round` posted on the board; an unreadable one, or one for
    another holder, round or market, counts as none."""
    reveals = []
    for holder, cid in board.share_reveals(market.address, round, market.creation_block()).items():
        try:
            shares = ShareReveal.model_validate_json(store.get(cid))
        except ValidationError:
            continue
        if shares.holder == holder and shares.round == round and shares.market.lower() == market.address.lower():
            reveals.append(shares)
    return reveals


def revealed_points(
    reveals: list[ShareReveal], publics: Mapping[int, bytes], context: MaskContext
) -> dict[tuple[int, int], bytes]:
    """Pair (lower index first) -> its shared mask point, from every point reveal whose
    Chaum-Pedersen proof verifies for its holder and that peer (`dleq`); others are ignored."""
    out = {}
    for shares in reveals:
        for peer, pp in shares.pair_points.items():
            if shares.holder not in publics or peer not in publics or peer == shares.holder:
                continue
            reveal = PointReveal(bytes.fromhex(pp.point), int(pp.challenge, 16), int(pp.response, 16))
            if verify_point(reveal, publics[shares.holder], publics[peer], context.info(POINT_LABEL)):
                out[min(peer, shares.holder), max(peer, shares.holder)] = reveal.point
    return out


def disputed_points(
    store: ContentStore,
    market: MarketClient,
    board: BoardClient,
    party: Party,
    me: int,
    survivors: set[int],
    context: MaskContext,
) -> dict[int, PairPoint]:
    """This survivor's shared mask point, proven, with each surviving peer whose stored commitment
    to their pair's stream differs from its own: what settles which of the two lies
    (`exclusions.masked_cheaters`). None outside a norm-bound market (no commitments stored), and
    none with a peer that stored no commitments at all (that alone names it): a point discloses
    its pair's stream."""
    cids = {s.index: s.cid for s in market.submissions(context.round)}
    try:
        mine = read_pair_commitments(store.get(cids[me])) if me in survivors and me in cids else {}
    except MalformedUpdateError:
        return {}
    seed = round_secrets(secret_of(party, market.address), context).mask_seed
    publics = mask_publics(store, market, board, context.round)
    out = {}
    for v in sorted(survivors & set(cids) & set(mine) - {me}):
        try:
            theirs = read_pair_commitments(store.get(cids[v]))
        except MalformedUpdateError:
            continue
        if theirs.get(me) != mine[v]:
            proof = reveal_point(seed, publics[v], context.info(POINT_LABEL))
            out[v] = PairPoint(
                point=proof.point.hex(),
                challenge=feldman.scalar_bytes(proof.challenge).hex(),
                response=feldman.scalar_bytes(proof.response).hex(),
            )
    return out


def mask_publics(store: ContentStore, market: MarketClient, board: BoardClient, round: int) -> dict[int, bytes]:
    """Each participant's round mask public key for `round`, as the board fixed its participants."""
    keys = bundles(store, market, board, board.round_reveals(market.address, round).participants, round)
    return {i: bytes.fromhex(b.rounds[round - 1].mask_public_key) for i, b in keys.items()}


def recover_round(
    store: ContentStore, market: MarketClient, board: BoardClient, round: int, size: int, ring: Ring = Z64
) -> tuple[np.ndarray, Recovery]:
    """The survivors' mean model of `round`, rounded onto the 2^-8 grid, and how it was rebuilt
    (masked in `ring`), from the chain and the store alone."""
    fixed = board.round_reveals(market.address, round)
    if not fixed.open:
        raise SecureAggregationError(f"reveals of round {round} are not open")
    context = MaskContext(market.chain.chain_id, market.address, round)
    keys = bundles(store, market, board, fixed.participants, round)
    masked = {
        s.index: read_masked(store.get(s.cid), size=size, context=context, ring=ring)
        for s in market.submissions(round)
        if fixed.survivors >> s.index & 1
    }
    reveals = read_reveals(store, market, board, round)
    recovery = recover_sum(
        masked=masked, bundles=keys, reveals=reveals, participants=set(keys), context=context, ring=ring
    )
    if not recovery.survivors:
        raise SecureAggregationError(f"round {round} has no survivors to aggregate")
    # on the grid, as every model of the market, so the next round's norm proofs can read it
    return quantize(decode_sum(recovery.total, ring) / len(recovery.survivors)), recovery
