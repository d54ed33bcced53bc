"""Secure-aggregation steps (fedmarket/secagg, contracts/README.md "Secure aggregation").

A trainer posts its key bundle once, between rounds, masks its model instead of sealing it, and
reveals its shares once a round's reveals are open. The aggregator excludes what cannot be
counted, opens the reveals, waits for enough holders, and rebuilds the survivors' mean from the
chain and the store alone: it never holds a single trainer's model.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from fedmarket.chain import TxResult
from fedmarket.commitments import commit
from fedmarket.context import current_platform
from fedmarket.errors import SecureAggregationError
from fedmarket.exclusions import Attribution, NormCheck, masked_rejection, named_cheaters
from fedmarket.fixed_point import quantize
from fedmarket.ml.models import parameter_count
from fedmarket.ml.updates import check_privacy, decode_update
from fedmarket.secagg import MaskContext, Recovery, ring_for, threshold_for
from fedmarket.secagg import onchain as secagg
from fedmarket.simulation.attacks import ATTACKS
from fedmarket.zk import build_norm_circuit, clip_to_bound, commit_elements, norm_domain, prove_norm
from fedmarket_schemas.market import TaskSpec
from fedmarket_schemas.rounds import Rejection
from fedmarket_schemas.trainer import PrivacySpent
from fedmarket_tasks.chain_ops import exclude_submissions
from fedmarket_tasks.common import once_task, remote_task


def _market(address: str):
    return current_platform().market(address)


def _context(market, round: int) -> MaskContext:
    return MaskContext(market.chain.chain_id, market.address, round)


@remote_task(task_run_name="fix-split-seed")
def fix_split_seed(market: str, caller: str) -> TxResult | None:
    """Fix the split seed now, while its block hash is readable (256 blocks); None if it is fixed."""
    m = _market(market)
    if m.last_event("SplitSeedFixed") is not None:
        return None
    return m.fix_split_seed(current_platform().party(caller).account)


def keys_deadline(m) -> int:
    """Chain time until which the aggregator holds round 1 for missing keys: half its window."""
    return m.aggregator_deadline() - m.aggregator_window() // 2


def keys_ready(market: str) -> bool:
    """Whether round 1 may open: every active trainer posted its keys, or `keys_deadline` passed."""
    m = _market(market)
    active = m.active_mask()
    return secagg.board_of(m).keyed_mask(m.address) & active == active or m.chain.now() >= keys_deadline(m)


def wait_for_keys(market: str, aggregator: str, *, poll_s: float) -> int:
    """Before round 1: fix the split seed (so the wait cannot let its block hash expire), then wait
    until every active trainer posted its keys or half the aggregator's window to open round 1
    passed (chain time). Returns the mask of the trainers with keys; the others may post theirs
    between rounds and take part from the next one."""
    m = _market(market)
    fix_split_seed(m.address, aggregator)
    while not keys_ready(m.address):
        time.sleep(poll_s)
    return secagg.board_of(m).keyed_mask(m.address)


@remote_task(task_run_name="post-keys-{trainer}")
def post_keys(market: str, trainer: str, attack: str | None = None) -> TxResult | None:
    """Deal and post this trainer's key bundle for every round; None when it is posted already.
    `attack`: a simulated attacker's name, whose `key_bundle` is posted instead (the demo)."""
    platform = current_platform()
    m = _market(market)
    party = platform.party(trainer)
    board = secagg.board_of(m)
    if board.keyed_mask(m.address) >> m.trainers().index(party.address) & 1:
        return None
    tamper = ATTACKS.get(attack).key_bundle if attack is not None else None
    return secagg.post_bundle(platform.store, m, board, party, m.round_count(), tamper)[1]


@remote_task(task_run_name="check-keys-{trainer}")
def check_keys(market: str, trainer: str, answer: bool = True) -> list[TxResult]:
    """Between rounds: complain against every dealer whose shares for this trainer do not open or
    fail their commitments, and answer every complaint against this trainer (fedmarket.secagg.
    onchain; `answer` false: a simulated attacker that does not); the transactions sent."""
    platform = current_platform()
    m = _market(market)
    party = platform.party(trainer)
    board = secagg.board_of(m)
    sent = secagg.check_dealers(platform.store, m, board, party)
    return sent + (secagg.answer_complaints(platform.store, m, board, party) if answer else [])


def wait_for_checks(market: str, round: int, *, poll_s: float, check_s: float) -> None:
    """Before opening `round`: if a key bundle first counts for it, give the trainers `check_s`
    (wall) to check it and complain; then wait until every complaint that counts for the round has
    an answer, or `check_s` more. A dealer whose complaint stays unmet sits the round out
    (onchain.bundles): the wait bounds how long one trainer's complaint can hold a round."""
    m = _market(market)
    board = secagg.board_of(m)
    if any(first == round for _, first in board.key_bundles(m.address, m.creation_block()).values()):
        time.sleep(check_s)
    until = time.monotonic() + check_s
    while time.monotonic() < until:
        complaints = board.complaints(m.address, m.creation_block())
        answers = board.answers(m.address, m.creation_block())
        if all(key in answers for key, first in complaints.items() if first <= round):
            return
        time.sleep(poll_s)


@remote_task(task_run_name="mask-and-store-r{round}-{trainer}")
def mask_and_store(
    market: str, trainer: str, round: int, local_model: np.ndarray, spec: TaskSpec, privacy: PrivacySpent | None = None
) -> tuple[str, str]:
    """(CID, commitment) of this trainer's masked model for `round`, masked with every
    participant's keys; SecureAggregationError when it posted none for this round. With the
    task's norm bound the model is clipped to it and proven (fedmarket/zk/norm_proof.py): the
    proof is stored with the masked model, and the commitment is the one the proof is for.
    `privacy`: in a DP-SGD task, what the trainer has spent, reported in the header."""
    platform = current_platform()
    m = _market(market)
    party = platform.party(trainer)
    board = secagg.board_of(m)
    index = m.trainers().index(party.address)
    keys = secagg.bundles(platform.store, m, board, secagg.participants(m, board, round), round)
    if index not in keys:
        raise SecureAggregationError(
            f"trainer {party.address} has no usable keys for round {round} of {m.address}: it cannot mask this round"
        )
    model, proof, commit_mask = quantize(local_model), None, None
    if spec.norm_bound is not None:  # clip to the bound and prove it; the proof's commitment goes on chain
        start = decode_update(platform.store.get(m.model_cid(round)), spec.model)
        model = clip_to_bound(model, start, spec.norm_bound)
        build = build_norm_circuit(parameter_count(spec.model), platform.settings)
        proof = prove_norm(build, model, start, norm_domain(m.chain.chain_id, m.address, round, party.address))
        commit_mask = partial(commit_elements, build)  # each pair's stream, so its model is checked alone
    raw = secagg.masked_bytes(
        model,
        party=party,
        index=index,
        keys=keys,
        context=_context(m, round),
        norm_proof=proof.proof_json if proof else None,
        privacy=privacy,
        ring=ring_for(spec.norm_bound),
        commit_mask=commit_mask,
    )
    return str(platform.store.put(raw)), proof.commitment if proof else commit(raw)


@remote_task(task_run_name="reveal-shares-r{round}-{trainer}")
def reveal_shares(market: str, trainer: str, round: int) -> TxResult | None:
    """Reveal this holder's shares for `round`; None when it already has."""
    platform = current_platform()
    m = _market(market)
    party = platform.party(trainer)
    board = secagg.board_of(m)
    if board.round_reveals(m.address, round).revealed >> m.trainers().index(party.address) & 1:
        return None
    return secagg.reveal(platform.store, m, board, party, round)[1]


@remote_task(task_run_name="check-masked-r{round}")
def check_masked(market: str, round: int, spec: TaskSpec) -> dict[int, Rejection]:
    """The round's submissions that cannot be counted, by trainer index (exclusions.masked_rejection)."""
    m = _market(market)
    store = current_platform().store
    taking_part, left_out = secagg.key_status(store, m, secagg.board_of(m), round)
    first = m.first_submissions()
    size, context = parameter_count(spec.model), _context(m, round)
    out = {}
    settings = current_platform().settings
    norm = NormCheck.of(store, spec, m.model_cid(round), settings)
    named = named_cheaters(store, m, spec, round, settings)
    for s in m.submissions(round):
        why = masked_rejection(
            store, s, taking_part, first.get(s.cid), size, context, norm, spec.training, left_out, named
        )
        if why is not None:
            out[s.index] = why
    return out


@remote_task(task_run_name="open-reveals-r{round}")
def open_reveals(market: str, aggregator: str, round: int) -> TxResult:
    """Fix the round's survivors on the board; a rerun returns the transaction that did."""
    platform = current_platform()
    m = _market(market)
    board = secagg.board_of(m)
    if board.round_reveals(m.address, round).open:
        return board.reveals_opened(m.address, round, m.creation_block())
    return board.open_reveals(platform.party(aggregator).account, m.address, round)


def close_submissions(market: str, aggregator: str, round: int, spec: TaskSpec) -> None:
    """Exclude on chain what cannot be counted, then fix the survivors on the board. Once they are
    fixed nothing more is excluded: the holders reveal by the survivors the board fixed."""
    m = _market(market)
    if not secagg.board_of(m).round_reveals(m.address, round).open:
        exclude_submissions(market, aggregator, round, check_masked(market, round, spec))
        open_reveals(market, aggregator, round)


def _reveals(m, round: int) -> tuple[int, int, int]:
    """(revealed, active, needed) masks and count of `round`'s share reveals; SecureAggregationError
    if the aggregator's window closed (chain time) with fewer than a majority: the sum cannot be
    rebuilt."""
    active = m.active_mask()
    needed = threshold_for(active.bit_count())
    revealed = secagg.board_of(m).round_reveals(m.address, round).revealed
    if revealed.bit_count() < needed and m.chain.now() > m.aggregator_deadline():
        raise SecureAggregationError(
            f"round {round} of {m.address}: {revealed.bit_count()} of {active.bit_count()} trainers revealed "
            f"their shares before the aggregator's window closed, {needed} are needed to rebuild the sum"
        )
    return revealed, active, needed


def reveals_ready(market: str, round: int, *, grace_s: float) -> bool:
    """Whether `round`'s sum may be rebuilt now, for a run that does not wait: every active
    trainer revealed its shares, or a majority did `grace_s` of chain time ago (when the
    listener's reveals-grace-passed comes)."""
    m = _market(market)
    revealed, active, needed = _reveals(m, round)
    if revealed & active == active:
        return True
    if revealed.bit_count() < needed:
        return False
    majority = secagg.board_of(m).reveal_blocks(m.address, round, m.creation_block())[needed - 1]
    return m.chain.now() >= m.chain.timestamp(majority) + grace_s


def wait_for_reveals(market: str, round: int, *, poll_s: float, grace_s: float) -> int:
    """Until every active trainer revealed its shares for `round`, or a majority did and `grace_s`
    (wall: a run that waits, such as the demo's on an in-process chain whose clock stands still)
    passed since; the revealed mask."""
    m = _market(market)
    enough_since = None
    while True:
        revealed, active, needed = _reveals(m, round)
        if revealed & active == active:
            return revealed
        if revealed.bit_count() >= needed:
            enough_since = enough_since or time.monotonic()
            if time.monotonic() - enough_since >= grace_s:
                return revealed
        time.sleep(poll_s)


@once_task(task_run_name="recover-r{round}")
def recover_mean(market: str, round: int, spec: TaskSpec) -> tuple[np.ndarray, Recovery, bool, Attribution | None]:
    """The survivors' mean model of `round`, how it was rebuilt (fedmarket.secagg.onchain),
    whether it may be counted (with a norm bound, only if the rebuilt sum is the sum of the models
    the survivors proved: NormCheck.sum_holds) and, when it may not, who is named for masking
    another model than it proved (NormCheck.attribute)."""
    platform = current_platform()
    m = _market(market)
    size, ring = parameter_count(spec.model), ring_for(spec.norm_bound)
    board = secagg.board_of(m)
    mean, recovery = secagg.recover_round(platform.store, m, board, round, size, ring)
    norm = NormCheck.of(platform.store, spec, m.model_cid(round), platform.settings)
    if norm is None:
        return mean, recovery, True, None
    counted = [s for s in m.submissions(round) if s.index in recovery.survivors]
    if norm.sum_holds(platform.store, counted, recovery.total):
        return mean, recovery, True, None
    publics = secagg.mask_publics(platform.store, m, board, round)
    reveals = secagg.read_reveals(platform.store, m, board, round)
    found = norm.attribute(platform.store, counted, recovery, publics, _context(m, round), reveals)
    return mean, recovery, False, found


def masked_epsilon(market: str, round: int, spec: TaskSpec) -> dict[str, float]:
    """DP-SGD task: the epsilon each trainer counted in `round` reported in its masked model's
    header (its word, checked against the task's terms when the round was closed)."""
    if spec.training.dp is None:
        return {}
    m, store = _market(market), current_platform().store
    counted = m.round_state(round).benign_mask
    return {
        s.trainer: check_privacy(store.get(s.cid), spec.training).epsilon
        for s in m.submissions(round)
        if counted >> s.index & 1
    }
