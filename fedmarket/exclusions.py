"""Submissions the aggregator cannot use: what each failure is called on chain, and the checks
that the aggregator runs when it opens a submission and that anyone can run again from the
evidence of an exclusion (`DataMarket.exclude`, contracts/README.md "Exclusions").

Not in the sources: sources/004 has the aggregator decrypt every update and leaves unusable ones
unspecified. Here an unusable submission is excluded on chain, with its reason and, once the
envelope's key could be derived, that key, which opens this one submission for anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedmarket.chain import MarketClient
from fedmarket.commitments import commit, commit_model
from fedmarket.crypto import Envelope, SealContext, open_with_key
from fedmarket.errors import (
    CommitmentMismatchError,
    DecryptionError,
    EnvelopeError,
    KeyMismatchError,
    MalformedUpdateError,
    SecureAggregationError,
    StoreError,
    StoreUnavailableError,
    UpdateError,
    UpdateOutOfBoundsError,
    ZKError,
)
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import check_bounds, check_privacy, decode_update
from fedmarket.secagg import BN254, Z64, MaskContext, Recovery
from fedmarket.secagg.masks import pair_key, pair_key_from_point, self_key
from fedmarket.secagg.onchain import (
    board_of,
    mask_publics,
    read_masked,
    read_norm_proof,
    read_pair_commitments,
    read_reveals,
    recover_round,
    revealed_points,
)
from fedmarket.settings import Settings
from fedmarket.store import ContentStore
from fedmarket.zk import (
    CircuitBuild,
    RoundCircuit,
    build_norm_circuit,
    combines_to,
    commit_elements,
    commit_values,
    norm_domain,
    proof_commitments,
    sum_is_proven,
    verify_norm,
)
from fedmarket_schemas.market import ModelConfig, TaskSpec, TrainingConfig, UpdateBounds
from fedmarket_schemas.rounds import ExclusionReason, Rejection, Submission
from fedmarket_schemas.secagg import ShareReveal
from fedmarket_schemas.trainer import PrivacySpent

# most specific first: KeyMismatchError and EnvelopeError are DecryptionErrors
_REASONS: tuple[tuple[type[Exception], ExclusionReason], ...] = (
    (EnvelopeError, ExclusionReason.BAD_ENVELOPE),
    (KeyMismatchError, ExclusionReason.KEY_MISMATCH),
    (DecryptionError, ExclusionReason.DOES_NOT_OPEN),
    (CommitmentMismatchError, ExclusionReason.COMMITMENT_MISMATCH),
    (UpdateError, ExclusionReason.MALFORMED_UPDATE),
    (StoreError, ExclusionReason.UNAVAILABLE),
)
UNUSABLE = tuple(kind for kind, _ in _REASONS)


def rejection(exc: Exception, key: bytes | None = None) -> Rejection:
    """The rejection of a submission whose check raised `exc`; `key`: the envelope's key, when it
    could be derived (kept only for the reasons that carry it). A store that cannot be reached is
    no verdict about the trainer, and is never turned into one."""
    if isinstance(exc, StoreUnavailableError):
        raise exc
    reason = next(r for kind, r in _REASONS if isinstance(exc, kind))
    evidence = "0x" + key.hex() if key is not None and reason.keyed else None
    return Rejection(reason=reason, detail=f"{type(exc).__name__}: {exc}", key=evidence)


def replayed(cid: str, first_seen: tuple[int, str] | None, round: int, trainer: str) -> Rejection | None:
    """A CID first submitted elsewhere (`first_seen`: the round and trainer that submitted it first
    in chain order) is a replay: its bytes were sealed for that submission."""
    if first_seen is None or first_seen == (round, trainer):
        return None
    return Rejection(
        reason=ExclusionReason.REPLAYED,
        detail=f"CID {cid} was first submitted in round {first_seen[0]} by {first_seen[1]}",
    )


def committed(plaintext: bytes, commitment: str, model: ModelConfig | None, circuit: RoundCircuit | None) -> None:
    """The opened bytes are what the trainer committed to: in a proven market, whose round circuit
    is `circuit`, the decoded update on the grid (commitments.commit_model), else the bytes."""
    try:
        vector = decode_update(plaintext, model) if circuit is not None else None
        actual = commit_model(vector, plaintext, circuit=circuit)
    except ZKError as exc:  # off the grid or out of the provable range: not what was committed
        raise UpdateOutOfBoundsError(f"opened update cannot be committed for a proof: {exc}") from exc
    if actual != commitment:
        raise CommitmentMismatchError(f"opened update does not match the commitment {commitment} on chain")


@dataclass(frozen=True)
class NormCheck:
    """What one round's norm-bound proofs are checked against (fedmarket/zk/norm_proof.py)."""

    build: CircuitBuild
    start: np.ndarray  # the round's global model
    bound: float

    @classmethod
    def of(cls, store: ContentStore, spec: TaskSpec, model_cid: str, settings: Settings) -> NormCheck | None:
        """The check for a round that starts from the model under `model_cid`; None without a bound."""
        if spec.norm_bound is None:
            return None
        build = build_norm_circuit(parameter_count(spec.model), settings)
        return cls(build, decode_update(store.get(model_cid), spec.model), spec.norm_bound)

    def check(self, raw: bytes, submission: Submission, context: MaskContext) -> None:
        """ZKError or MalformedUpdateError unless the proof stored with `raw` shows the model
        behind the submission's commitment within the bound, for this trainer, round and market."""
        domain = norm_domain(context.chain_id, context.market, context.round, submission.trainer)
        proof = read_norm_proof(raw)
        verify_norm(
            self.build, proof, commitment=submission.commitment, start=self.start, domain=domain, bound=self.bound
        )

    def sum_holds(self, store: ContentStore, counted: list[Submission], total: np.ndarray) -> bool:
        """Whether the rebuilt sum `total` (field elements) of the `counted` submissions is the sum of
        the models their norm proofs commit to: else one of them masked another model than it proved."""
        proofs = [read_norm_proof(store.get(s.cid)) for s in counted]
        return sum_is_proven(self.build, proofs, BN254.integers(total))

    def attribute(
        self,
        store: ContentStore,
        counted: list[Submission],
        recovery: Recovery,
        publics: Mapping[int, bytes],
        context: MaskContext,
        reveals: list[ShareReveal],
    ) -> Attribution:
        """Which of the `counted` survivors masked another model than it proved (`masked_cheaters`),
        with the pair points verified in the round's `reveals`."""
        raws = {s.index: store.get(s.cid) for s in counted}
        points = revealed_points(reveals, publics, context)
        return masked_cheaters(self.build, raws, recovery, publics, context, self.start.size, points)


@dataclass(frozen=True)
class Attribution:
    """Who, among a norm-bound round's survivors, masked another model than it proved."""

    named: Mapping[int, str]  # survivor -> why
    disputed: tuple[tuple[int, int], ...]  # pairs whose commitments to their stream differ


def masked_cheaters(
    build: CircuitBuild,
    raws: Mapping[int, bytes],
    recovery: Recovery,
    publics: Mapping[int, bytes],
    context: MaskContext,
    size: int,
    points: Mapping[tuple[int, int], bytes] | None = None,
) -> Attribution:
    """Check each survivor's masked model y (BN254's field, `raws` by survivor) on its own:
    C(y) - C(0) must be (C(W) - C(0)) + (C(b) - C(0)) + sum_v s(u, v) (C(k_uv) - C(0)), W the model
    its norm proof commits to, b its self mask (from its seed rebuilt from the reveals) and k_uv
    its pair streams with every other participant v (`publics`: their round mask public keys). A
    pair with a dropped trainer is computed from that trainer's rebuilt seed; a pair of survivors
    is what both stored (`read_pair_commitments`). Where the two differ, one of them lies: a
    verified point reveal of the pair (`points`, by pair, `onchain.revealed_points`) gives the
    pair's stream and names the one whose commitment is not its; without one the pair stays
    disputed and neither is checked. An honest survivor is never named, its terms all being true;
    a cheater is, unless it hides behind a pair that nobody settles."""
    zero, points = commit_values(build, np.zeros(size)), points or {}

    def stream_commitment(key: bytes) -> bytes:
        return commit_elements(build, BN254.stream(key, size))

    named: dict[int, str] = {}
    claims: dict[int, dict[int, bytes]] = {}
    for u, raw in raws.items():
        try:
            claims[u] = read_pair_commitments(raw)
        except MalformedUpdateError as exc:
            named[u] = str(exc)
    truth: dict[tuple[int, int], bytes] = {}  # pairs of survivors: the commitment to their stream
    disputed = []
    for u, v in ((u, v) for u in sorted(claims) for v in sorted(claims) if u < v):
        if (claim := claims[u].get(v)) is not None and claim == claims[v].get(u):
            truth[u, v] = claim
        elif (point := points.get((u, v))) is not None:
            truth[u, v] = stream_commitment(pair_key_from_point(point, publics[u], publics[v], context))
            for a, b in ((u, v), (v, u)):
                if claims[a].get(b) != truth[u, v]:
                    named[a] = f"its commitment to its pair mask with trainer {b} is not that mask's"
        else:
            disputed.append((u, v))
    for u in sorted(set(claims) - set(named)):
        terms = [
            (1, proof_commitments(read_norm_proof(raws[u]), 1)[0]),
            (1, stream_commitment(self_key(recovery.self_seeds[u], context))),
        ]
        for v in sorted(set(publics) - {u}):
            if v in recovery.mask_seeds:  # dropped: the pair's stream from its rebuilt seed
                point = stream_commitment(pair_key(recovery.mask_seeds[v], publics[u], context))
            elif (pair := (min(u, v), max(u, v))) in truth:
                point = truth[pair]
            else:  # disputed, or a survivor named for storing no commitments: unsettled
                break
            terms.append((1 if u < v else -1, point))
        else:
            masked = commit_elements(build, read_masked(raws[u], size=size, context=context, ring=BN254))
            if not combines_to(masked, terms, zero):
                named[u] = "its masked model is not the model its norm proof commits to plus its masks"
    return Attribution(named, tuple(disputed))


def named_cheaters(
    store: ContentStore, market: MarketClient, spec: TaskSpec, before: int, settings: Settings
) -> dict[int, tuple[int, str]]:
    """Trainer index -> (round, why) for every trainer named in a norm-bound round before `before`
    for masking another model than it proved (`masked_cheaters`), first naming kept. Re-derived
    from public bytes, the chain and the board, so anyone checks the exclusions it causes; only
    rounds that counted nobody can name anyone."""
    if spec.norm_bound is None:
        return {}
    board = board_of(market)
    size, out = parameter_count(spec.model), {}
    for r in range(1, before):
        state = market.round_state(r)
        if not state.finalized or state.benign_mask != 0 or not board.round_reveals(market.address, r).open:
            continue
        try:
            _, recovery = recover_round(store, market, board, r, size, BN254)
        except SecureAggregationError:
            continue  # nothing to rebuild: nobody survived
        norm = NormCheck.of(store, spec, market.model_cid(r), settings)
        counted = [s for s in market.submissions(r) if s.index in recovery.survivors]
        if norm is None or norm.sum_holds(store, counted, recovery.total):
            continue
        context = MaskContext(market.chain.chain_id, market.address, r)
        publics = mask_publics(store, market, board, r)
        found = norm.attribute(store, counted, recovery, publics, context, read_reveals(store, market, board, r))
        for index, why in found.named.items():
            out.setdefault(index, (r, why))
    return out


def masked_rejection(
    store: ContentStore,
    submission: Submission,
    participants: int,
    first_seen: tuple[int, str] | None,
    size: int,
    context: MaskContext,
    norm: NormCheck | None = None,
    training: TrainingConfig | None = None,
    left_out: Mapping[int, str] | None = None,
    named: Mapping[int, tuple[int, str]] | None = None,
) -> Rejection | None:
    """Why a secure-aggregation submission cannot be counted in the sum, or None. Every check
    reads public bytes, so anyone can run it again: the trainer's keys take part in the round
    (bit of `participants`; `left_out`: why a trainer's keys do not, onchain.key_status), the CID was not submitted before, its bytes are a masked model of this
    market and round, of the task's size, and they match the commitment on chain: its SHA-256, or
    with a norm bound (`norm`) the commitment its norm proof is for, a proof that verifies; in a
    DP-SGD task (`training`), its header reports what the task requires; and it was not named in
    an earlier round (`named`, `named_cheaters`). A store that cannot be reached raises: no
    verdict about the trainer."""
    index, round = submission.index, context.round
    if not participants >> index & 1:
        why = (left_out or {}).get(index, "it posted none before the round")
        return Rejection(
            reason=ExclusionReason.MASKED_MALFORMED,
            detail=f"trainer {index} has no usable keys for round {round} ({why}): its masks cannot be removed",
        )
    if named and index in named:
        earlier, why = named[index]
        return Rejection(reason=ExclusionReason.MASKED_MALFORMED, detail=f"named in round {earlier}: {why}")
    if (replay := replayed(submission.cid, first_seen, round, submission.trainer)) is not None:
        return replay
    try:
        raw = store.get(submission.cid)
    except StoreUnavailableError:
        raise
    except StoreError as exc:
        return Rejection(reason=ExclusionReason.UNAVAILABLE, detail=f"{type(exc).__name__}: {exc}")
    try:
        read_masked(raw, size=size, context=context, ring=Z64 if norm is None else BN254)
        if training is not None:
            check_privacy(raw, training)
    except UpdateError as exc:  # malformed, or a privacy report the task refuses
        return Rejection(reason=ExclusionReason.MASKED_MALFORMED, detail=str(exc))
    if norm is not None:
        try:
            norm.check(raw, submission, context)
        except (ZKError, MalformedUpdateError) as exc:
            return Rejection(reason=ExclusionReason.MASKED_MALFORMED, detail=f"norm proof: {exc}")
    elif commit(raw) != submission.commitment:
        return Rejection(
            reason=ExclusionReason.MASKED_MALFORMED,
            detail=f"its bytes do not match the commitment {submission.commitment} on chain",
        )
    return None


def recheck(
    raw: bytes,
    key: bytes,
    context: SealContext,
    commitment: str,
    model: ModelConfig,
    bounds: UpdateBounds,
    start: np.ndarray,
    circuit: RoundCircuit | None,
    training: TrainingConfig | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, PrivacySpent | None]:
    """Every check the aggregator runs on a submission, with its envelope's key (derived by the
    aggregator, or a published one, for an auditor): the usable update (written into `out` when
    given: a row of the round's matrix) and, in a DP-SGD task, the privacy its trainer reports; or
    the first failure raised (one of UNUSABLE). `training`: the task's, whose DP-SGD requirement
    the update's privacy report must meet."""
    plaintext = open_with_key(Envelope.parse(raw), key, context)
    committed(plaintext, commitment, model, circuit)
    vector = decode_update(plaintext, model, out=out)
    check_bounds(vector, start, bounds)
    spent = check_privacy(plaintext, training) if training is not None else None
    return vector, spent
