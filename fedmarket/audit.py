"""Re-check a market from the chain and the store alone, as any party can (`fedmarket audit`).

Each check is one row: `pass`, `fail`, or `trusted` where neither the chain nor the store can tell
(in a market without verifiers the masks, the aggregates' arithmetic and the contributions are
the aggregator's word: updates are sealed to it). The ledger the checks read is the one rebuilt
from the market's events, so a test can hand in a tampered one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property

from pydantic import ValidationError

from fedmarket.algorithms.contribution import inclusion, to_onchain
from fedmarket.chain import MarketClient, MarketLedger, contribution_step
from fedmarket.chain.ledger import LedgerRound
from fedmarket.commitments import commit, commit_model, round_circuit
from fedmarket.context import current_platform
from fedmarket.crypto import Envelope, SealContext, generate_private_key, submission_key
from fedmarket.errors import (
    CIDMismatchError,
    ContentNotFoundError,
    DataValidationError,
    EnvelopeError,
    InvalidCIDError,
    KeyMismatchError,
    SecureAggregationError,
    UpdateError,
    ZKError,
)
from fedmarket.exclusions import UNUSABLE, NormCheck, masked_rejection, named_cheaters, recheck, rejection, replayed
from fedmarket.field import BN254_FIELD
from fedmarket.fixed_point import quantize
from fedmarket.market_context import market_context, task_spec
from fedmarket.ml.models import parameter_count
from fedmarket.ml.training import accuracy, initial_model
from fedmarket.ml.updates import decode_update, encode_update
from fedmarket.secagg import MaskContext, ring_for
from fedmarket.secagg import onchain as secagg
from fedmarket.store import ContentStore
from fedmarket.zk import RoundCircuit, round_rloo_seed
from fedmarket_schemas.audit import AuditCheck, AuditReport
from fedmarket_schemas.market import Aggregation
from fedmarket_schemas.rounds import ExclusionReason, Rejection, Submission

# what content under an on-chain CID can be instead of what it should (an unreachable store or
# node is not among them: that raises, and is no verdict about the market)
UNREADABLE = (
    ContentNotFoundError,
    CIDMismatchError,
    InvalidCIDError,
    UpdateError,
    ZKError,
    DataValidationError,
    ValidationError,
)


def _hex_int(value: str | None) -> int:
    return int(value, 16) if value else 0


def _slot_commitments(entry: LedgerRound) -> dict[str, int]:
    """A round's proof instances per trainer: its commitment, none (zero) where excluded."""
    return {t: _hex_int(c) for t, (_, c) in entry.submissions.items() if t not in entry.exclusions}


def ledger_differences(market: MarketClient, ledger: MarketLedger) -> list[str]:
    """Where the ledger rebuilt from events disagrees with the contract's own views."""
    out: list[str] = []

    def same(what: str, from_events, from_views) -> None:
        if from_events != from_views:
            out.append(f"{what}: events say {from_events!r}, the contract {from_views!r}")

    trainers = market.trainers()
    same("phase", ledger.phase, market.phase())
    same("trainers", ledger.trainers, trainers)
    same("owner", ledger.owner, market.owner())
    same("deposit", ledger.deposit, market.deposit())
    same("current round", ledger.current_round, market.current_round())
    if ledger.split_seed is not None:
        same("split seed", ledger.split_seed, "0x" + market.split_seed().hex())
        same("active mask", ledger.active_mask, market.active_mask())
    for r, entry in ledger.rounds.items():
        state = market.round_state(r)
        same(
            f"round {r} state",
            (entry.finalized, entry.verified, entry.benign_mask),
            (state.finalized, state.verified, state.benign_mask),
        )
        submitted = sum(1 << trainers.index(t) for t in entry.submissions if t in trainers)
        same(f"round {r} submissions", submitted, market.submitted_mask(r))
        excluded = sum(1 << trainers.index(t) for t in entry.exclusions if t in trainers)
        same(f"round {r} exclusions", excluded, market.excluded_mask(r))
        for trainer, (_, commitment) in entry.submissions.items():
            if trainer in trainers:
                same(f"round {r} commitment of {trainer}", commitment, market.commitment_of(r, trainers.index(trainer)))
    for index, trainer in enumerate(ledger.trainers):
        same(f"benign rounds of {trainer}", ledger.benign_rounds(index), market.benign_rounds(index))
    for account in dict.fromkeys([market.owner(), market.aggregator(), *trainers]):
        same(f"owed to {account}", ledger.owed(account), market.owed(account))
    same("total owed", ledger.total_owed(), market.total_owed())
    same("undistributed", ledger.undistributed(), market.undistributed())
    same("bonds held", ledger.bonds_held(), market.bonds_held())
    return out


def expected_payouts(ledger: MarketLedger) -> tuple[int, list[int]]:
    """(pool, per-trainer payouts) by eq. (5) of sources/004 from the ledger's masks, accuracy and
    contributions, with the contract's integer rounding."""
    spec, n = ledger.spec, len(ledger.trainers)
    participation = [ledger.benign_rounds(i) * int(spec["participationReward"]) for i in range(n)]
    if ledger.phase == "Aborted":
        return 0, participation
    pool = 0
    for threshold, amount in zip(spec["accuracyThresholds"], spec["rewardPools"]):
        if ledger.accuracy_bps is not None and ledger.accuracy_bps >= int(threshold):
            pool = int(amount)
    positive = sum(max(0, c) for c in ledger.contributions)
    return pool, [p + (pool * c // positive if c > 0 else 0) for p, c in zip(participation, ledger.contributions)]


class Audit:
    """The checks of one market; `run()` returns them all."""

    def __init__(self, market: MarketClient, store: ContentStore, ledger: MarketLedger | None = None):
        self.market, self.store = market, store
        self.ledger = ledger if ledger is not None else MarketLedger.rebuild(market)
        self.proven_rounds = market.round_verifier() is not None
        self.proven_settlement = market.settlement_verifier() is not None
        self._secure: bool | None = None
        self._norms: dict[int, NormCheck | None] = {}
        self._named: dict[int, dict[int, tuple[int, str]]] = {}

    @cached_property
    def round_circuit(self) -> RoundCircuit | None:
        """The round circuit the market's model commitments are made for (None: rounds unproven)."""
        if not self.proven_rounds:
            return None
        return round_circuit(self.market, task_spec(self.market, self.store).model, current_platform().settings)

    @property
    def secure(self) -> bool:
        """A secure-aggregation market: every round's sum can be rebuilt from public bytes."""
        if self._secure is None:
            self._secure = task_spec(self.market, self.store).aggregation == Aggregation.secure
        return self._secure

    def run(self) -> AuditReport:
        checks: list[AuditCheck] = []
        steps = [
            ("ledger", self.ledger_check),
            ("funds", self.funds),
            ("payouts", self.payouts),
            ("content", self.content),
            ("models", self.models),
            ("exclusions", self.exclusions),
            ("rounds", self.round_proofs),
            ("settlement", self.settlement),
        ]
        for name, check in steps:
            try:
                checks.extend(check())
            except UNREADABLE as exc:  # content the chain names is gone or altered: the check fails
                checks.append(AuditCheck(name=name, status="fail", detail=f"cannot be checked: {exc}"))
        return AuditReport(market=self.market.address, phase=self.ledger.phase, checks=checks)

    # ------------------------------------------------------------ money
    def ledger_check(self) -> Iterator[AuditCheck]:
        differences = ledger_differences(self.market, self.ledger)
        detail = "; ".join(differences) or "the state rebuilt from events equals the contract's views"
        yield AuditCheck(name="ledger", status="fail" if differences else "pass", detail=detail)

    def funds(self) -> Iterator[AuditCheck]:
        ledger, market = self.ledger, self.market
        held = market.total_owed() + market.undistributed() + market.bonds_held()
        if market.balance() != held:
            yield AuditCheck(
                name="funds",
                status="fail",
                detail=f"balance {market.balance()} wei, but owed + escrow + bonds = {held}",
            )
            return
        if ledger.phase in ("Settled", "Aborted"):
            paid = sum(ledger.payouts) + ledger.aggregator_fee + ledger.owner_refund
            if paid != ledger.deposit:
                yield AuditCheck(
                    name="funds",
                    status="fail",
                    detail=f"deposit {ledger.deposit} wei, but paid + fee + refund = {paid}",
                )
                return
        yield AuditCheck(name="funds", status="pass", detail=f"balance {held} wei = owed + escrow + bonds")

    def payouts(self) -> Iterator[AuditCheck]:
        ledger = self.ledger
        if ledger.phase not in ("Settled", "Aborted"):
            return
        pool, expected = expected_payouts(ledger)
        wrong = [
            f"{t}: paid {got}, eq. (5) gives {want}"
            for t, got, want in zip(ledger.trainers, ledger.payouts, expected)
            if got != want
        ]
        if ledger.phase == "Settled" and ledger.reward_pool != pool:
            wrong.append(f"pool {ledger.reward_pool}, the schedule gives {pool} at {ledger.accuracy_bps} bps")
        if ledger.phase == "Settled" and ledger.aggregator_fee != int(ledger.spec["aggregatorFee"]):
            wrong.append(f"aggregator fee {ledger.aggregator_fee}, the spec says {ledger.spec['aggregatorFee']}")
        detail = "; ".join(wrong) or f"{len(expected)} payouts equal eq. (5) from the on-chain masks and contributions"
        yield AuditCheck(name="payouts", status="fail" if wrong else "pass", detail=detail)

    # ------------------------------------------------------------ content
    def _cids(self) -> Iterator[tuple[str, str]]:
        ledger = self.ledger
        yield "task spec", self.market.spec_cid()
        yield "owner data", self.market.data_cid()
        for trainer, cid in ledger.data_summaries.items():
            yield f"data summary of {trainer}", cid
        for r, entry in sorted(ledger.rounds.items()):
            yield f"round {r} model", entry.model_cid
            for trainer, (cid, _) in entry.submissions.items():
                if entry.exclusions.get(trainer, (0, None))[0] != ExclusionReason.UNAVAILABLE.code:
                    yield f"round {r} update of {trainer}", cid  # else: the exclusions check says why
            if entry.aggregate_cid is not None:
                yield f"round {r} aggregate", entry.aggregate_cid

    def content(self) -> Iterator[AuditCheck]:
        """Every CID on chain resolves to bytes that hash to it (a store that cannot be reached
        raises: that is no verdict about the market)."""
        bad, count = [], 0
        for what, cid in self._cids():
            count += 1
            try:
                self.store.get(cid)
            except UNREADABLE as exc:
                bad.append(f"{what} ({cid}): {exc}")
        detail = "; ".join(bad) or f"{count} CIDs resolve to bytes that hash to them"
        yield AuditCheck(name="content", status="fail" if bad else "pass", detail=detail)

    def _bytes(self, cid: str) -> bytes | None:
        try:
            return self.store.get(cid)
        except (ContentNotFoundError, CIDMismatchError, InvalidCIDError):
            return None  # the content check names it

    def _model(self, cid: str, commitment: str, spec, what: str) -> str | None:
        """Why the global model under `cid` is not the committed one, or None."""
        try:
            plaintext = self.store.get(cid)
            vector = decode_update(plaintext, spec.model)
            actual = commit_model(vector, plaintext, circuit=self.round_circuit, global_model=True)
        except UNREADABLE as exc:
            return f"{what} ({cid}) cannot be read as the task's model: {exc}"
        return None if actual == commitment else f"{what} ({cid}) commits to {actual}, the chain says {commitment}"

    def models(self) -> Iterator[AuditCheck]:
        """Round 1 starts from the task's initial model; each round after from the last aggregate;
        every model and aggregate is the one its on-chain commitment names."""
        rounds = self.ledger.rounds
        if not rounds:
            return
        spec = task_spec(self.market, self.store)
        start = initial_model(spec.model, seed=spec.init_seed)
        start = quantize(start) if self.proven_rounds or self.secure else start
        wrong = []
        if self._bytes(rounds[1].model_cid) != encode_update(start, spec.model):
            wrong.append(
                f"round 1 model ({rounds[1].model_cid}) is not the task's initial model (seed {spec.init_seed})"
            )
        for r, entry in sorted(rounds.items()):
            if r > 1 and entry.model_cid != rounds[r - 1].aggregate_cid:
                wrong.append(f"round {r} model {entry.model_cid} is not round {r - 1}'s aggregate")
            if r == 1 and (problem := self._model(entry.model_cid, entry.model_commitment, spec, "round 1 model")):
                wrong.append(problem)
            if entry.aggregate_cid is not None:
                problem = self._model(
                    entry.aggregate_cid, entry.aggregate_commitment or "", spec, f"round {r} aggregate"
                )
                if problem:
                    wrong.append(problem)
        detail = "; ".join(wrong) or f"{len(rounds)} rounds chain from the initial model through their aggregates"
        yield AuditCheck(name="models", status="fail" if wrong else "pass", detail=detail)

    # ------------------------------------------------------------ exclusions
    def exclusions(self) -> Iterator[AuditCheck]:
        """Every exclusion's evidence, re-checked against the sealed bytes under the submission's
        CID: an update that opens with the published key and passes every check the aggregator
        runs was excluded without cause (fail, naming the trainer and the round). What no one but
        the aggregator could see is `trusted`: that bytes were unavailable, or that an envelope's
        header commits to another key than the one it derived."""
        listed = [
            (r, trainer, ExclusionReason.of_code(code), key)
            for r, entry in sorted(self.ledger.rounds.items())
            for trainer, (code, key) in entry.exclusions.items()
        ]
        if not listed:
            return
        spec = task_spec(self.market, self.store)
        first_seen = self._first_seen()
        failed, trusted = [], []
        for r, trainer, reason, key in listed:
            status, why = self._exclusion(r, trainer, reason, key, spec, first_seen)
            what = f"round {r}: {trainer} excluded as {reason.value}: {why}"
            if status == "fail":
                failed.append(what)
            elif status == "trusted":
                trusted.append(what)
        if failed:
            yield AuditCheck(name="exclusions", status="fail", detail="; ".join(failed))
        elif trusted:
            yield AuditCheck(name="exclusions", status="trusted", detail="; ".join(trusted))
        else:
            yield AuditCheck(
                name="exclusions", status="pass", detail=f"{len(listed)} exclusions re-checked from their evidence"
            )

    def _first_seen(self) -> dict[str, tuple[int, str]]:
        """CID -> (round, trainer) of its first submission, in chain order."""
        first: dict[str, tuple[int, str]] = {}
        for r, entry in sorted(self.ledger.rounds.items()):
            for trainer, (cid, _) in entry.submissions.items():
                first.setdefault(cid, (r, trainer))
        return first

    def _exclusion(
        self, r: int, trainer: str, reason: ExclusionReason, key: str | None, spec, first_seen
    ) -> tuple[str, str]:
        """(status, why) of one exclusion."""
        entry = self.ledger.rounds[r]
        cid, commitment = entry.submissions[trainer]
        if reason is ExclusionReason.UNAVAILABLE:
            return "trusted", "that its bytes could not be read in time is the aggregator's word"
        if reason is ExclusionReason.REPLAYED:
            first = replayed(cid, first_seen.get(cid), r, trainer)
            return ("pass", first.detail) if first else ("fail", f"its CID {cid} was not submitted before")
        if self.secure:
            return self._masked_exclusion(r, trainer, reason, first_seen, spec)
        raw = self._bytes(cid)
        if raw is None:
            return "trusted", f"its bytes ({cid}) are gone, so the evidence cannot be re-checked"
        if reason is ExclusionReason.BAD_ENVELOPE:
            try:  # a small-order ephemeral key fails every exchange, so any key shows it
                submission_key(Envelope.parse(raw), recipient=generate_private_key(), sender=bytes(32))
            except EnvelopeError as exc:
                return "pass", str(exc)
            return "fail", "its bytes are a well-formed envelope"
        context = SealContext(self.market.chain.chain_id, self.market.address, r, trainer)
        start = decode_update(self.store.get(entry.model_cid), spec.model)
        try:
            recheck(
                raw,
                bytes.fromhex((key or "0x")[2:]),
                context,
                commitment,
                spec.model,
                spec.update_bounds,
                start,
                self.round_circuit,
                spec.training,
            )
        except KeyMismatchError as exc:
            if reason is ExclusionReason.KEY_MISMATCH:
                return "trusted", "the header commits to another key than the published one (the trainer's to dispute)"
            return "fail", f"the published key is not the one the trainer sealed with ({exc})"
        except UNUSABLE as exc:
            found = rejection(exc).reason
            return "pass", f"re-checked with the published key: {found.value}, {exc}"
        return "fail", "its update opens with the published key and passes every check: excluded without cause"

    def _masked_exclusion(self, r: int, trainer: str, reason: ExclusionReason, first_seen, spec) -> tuple[str, str]:
        """(status, why) of one exclusion in a secure market: its bytes are public, so every check
        the aggregator ran runs again here."""
        found = self._recheck_masked(r, [trainer], spec)[trainer]
        if found is None:
            return "fail", "its masked bytes pass every check: excluded without cause"
        if found.reason != reason:
            return "fail", f"re-checked: {found.describe()}, not {reason.value}"
        status = "trusted" if reason is ExclusionReason.UNAVAILABLE else "pass"
        return status, f"re-checked from its public bytes: {found.detail}"

    def _recheck_masked(self, r: int, trainers: list[str], spec) -> dict[str, Rejection | None]:
        """Every check the aggregator runs on a secure round's submissions, run again on these
        trainers' public bytes: why each cannot be counted, or None."""
        context = MaskContext(self.market.chain.chain_id, self.market.address, r)
        participants, left_out = secagg.key_status(self.store, self.market, self.board, r)
        norm, first, size = self._norm_check(r, spec), self._first_seen(), parameter_count(spec.model)
        named = self._named_before(r, spec)
        out = {}
        for trainer in trainers:
            submission = self._submission(r, trainer)
            out[trainer] = masked_rejection(
                self.store,
                submission,
                participants,
                first.get(submission.cid),
                size,
                context,
                norm,
                spec.training,
                left_out,
                named,
            )
        return out

    def _submission(self, r: int, trainer: str) -> Submission:
        cid, commitment = self.ledger.rounds[r].submissions[trainer]
        index = self.ledger.trainers.index(trainer)
        return Submission(round=r, trainer=trainer, index=index, cid=cid, commitment=commitment)

    def _named_before(self, r: int, spec) -> dict[int, tuple[int, str]]:
        """The trainers named before round r (`named_cheaters`), derived once per round: each
        re-check of an exclusion or a counted submission asks again."""
        if r not in self._named:
            self._named[r] = named_cheaters(self.store, self.market, spec, r, current_platform().settings)
        return self._named[r]

    def _norm_check(self, r: int, spec) -> NormCheck | None:
        """Round r's norm-bound check (None without a bound), made once per round."""
        if r not in self._norms:
            model_cid = self.ledger.rounds[r].model_cid
            self._norms[r] = NormCheck.of(self.store, spec, model_cid, current_platform().settings)
        return self._norms[r]

    @cached_property
    def board(self):
        return secagg.board_of(self.market)

    def secure_rounds(self) -> Iterator[AuditCheck]:
        """Each round's aggregate and benign mask, rebuilt from the masked models, the key bundles
        and the share reveals under the CIDs on chain: the survivors the board fixed and their
        mean, or, with a norm bound whose proofs do not add up to that sum, nobody and the round's
        own model."""
        spec = task_spec(self.market, self.store)
        wrong, count = [], 0
        for r, entry in sorted(self.ledger.rounds.items()):
            if not entry.finalized:
                continue
            count += 1
            try:
                mean, recovery = secagg.recover_round(
                    self.store, self.market, self.board, r, parameter_count(spec.model), ring_for(spec.norm_bound)
                )
            except SecureAggregationError as exc:
                wrong.append(f"round {r}: its sum cannot be rebuilt: {exc}")
                continue
            wrong.extend(self._counted_unusable(r, recovery.survivors, spec))
            if not self._sum_proven(r, recovery, spec):  # the round counts nobody, keeps its model
                mean, counted = decode_update(self.store.get(entry.model_cid), spec.model), 0
            else:
                counted = sum(1 << i for i in recovery.survivors)
            if counted != entry.benign_mask:
                wrong.append(f"round {r}: benign mask {entry.benign_mask:#x}, the rebuilt round counts {counted:#x}")
            actual = commit(encode_update(mean, spec.model))
            if actual != entry.aggregate_commitment:
                wrong.append(
                    f"round {r}: the aggregate commits to {entry.aggregate_commitment}, the rebuilt mean to {actual}"
                )
        detail = (
            "; ".join(wrong) or f"{count} rounds: each aggregate is the mean rebuilt from the masked models and reveals"
        )
        yield AuditCheck(name="rounds", status="fail" if wrong else "pass", detail=detail)

    def _sum_proven(self, r: int, recovery, spec) -> bool:
        """Without a norm bound, True; with one, whether the survivors' sum is that of the models
        their proofs commit to."""
        norm = self._norm_check(r, spec)
        if norm is None:
            return True
        counted = [self._submission(r, self.ledger.trainers[i]) for i in recovery.survivors]
        return norm.sum_holds(self.store, counted, recovery.total)

    def _counted_unusable(self, r: int, counted: tuple[int, ...], spec) -> list[str]:
        """Round r's counted submissions that fail a check the aggregator must run (a norm proof
        among them, with a bound): each was counted without cause."""
        found = self._recheck_masked(r, [self.ledger.trainers[i] for i in counted], spec)
        return [f"round {r}: {t} was counted, but {why.describe()}" for t, why in found.items() if why is not None]

    def inclusion(self) -> Iterator[AuditCheck]:
        """A secure market pays by inclusion: contributions follow from the on-chain masks alone."""
        ledger = self.ledger
        masks = [ledger.rounds[r].benign_mask for r in sorted(ledger.rounds)]
        expected = to_onchain(inclusion.of_masks(masks, ledger.trainers), ledger.trainers)
        if list(ledger.contributions) == expected:
            yield AuditCheck(name="contributions", status="pass", detail="inclusion counts recomputed from the masks")
        else:
            yield AuditCheck(
                name="contributions",
                status="fail",
                detail=f"settled with {list(ledger.contributions)}, the masks give {expected}",
            )

    # ------------------------------------------------------------ proofs
    def _proofs(self, event: str, check: Callable[[dict, bytes], str | None]) -> list[str]:
        """Re-verify, read-only, the proof in the calldata of every `event` transaction."""
        problems = []
        for log in self.market.events(event):
            _, args = self.market.call_that_emitted(log)
            problem = check(dict(log["args"]), bytes(args["proof"]))
            if problem:
                problems.append(problem)
        return problems

    def round_instances(self, r: int) -> list[int]:
        """Round r's public instances rebuilt from the ledger (layout in contracts/README.md)."""
        ledger, entry = self.ledger, self.ledger.rounds[r]
        by_trainer = _slot_commitments(entry)
        previous = ledger.rounds[r - 1].benign_mask if r > 1 else 0
        return [
            self.market.domain(r),
            r,
            *[by_trainer.get(t, 0) for t in ledger.trainers],
            _hex_int(entry.model_commitment),
            _hex_int(entry.aggregate_commitment),
            entry.benign_mask,
            previous,
        ]

    def round_proofs(self) -> Iterator[AuditCheck]:
        finalized = [r for r, e in self.ledger.rounds.items() if e.finalized]
        if not finalized:
            return
        if self.secure:
            yield from self.secure_rounds()
            return
        if not self.proven_rounds:
            yield AuditCheck(
                name="rounds",
                status="trusted",
                detail="no round verifier: each round's mask and aggregate are the aggregator's word",
            )
            return
        verifier = self.market.round_verifier() or ""

        def check(args: dict, proof: bytes) -> str | None:
            r = int(args["round"])
            if self.market.verifier_accepts(verifier, proof, self.round_instances(r)):
                return None
            return f"round {r}: the verifier rejects its proof with the instances rebuilt from the chain"

        problems = self._proofs("RoundFinalized", check)
        detail = "; ".join(problems) or f"{len(finalized)} round proofs verify against {verifier}"
        yield AuditCheck(name="rounds", status="fail" if problems else "pass", detail=detail)

    def contribution_instances(self, r: int) -> list[int]:
        """Round r's contribution proof instances rebuilt from the ledger (contracts/README.md)."""
        ledger = self.ledger
        entry, final = ledger.rounds[r], ledger.rounds[int(ledger.spec["rounds"])]
        by_trainer = _slot_commitments(entry)
        accuracy, contributions = ledger.proven[r]
        return [
            self.market.domain(contribution_step(r)),
            _hex_int(ledger.spec["dataCommitment"]),
            _hex_int(final.aggregate_commitment),
            round_rloo_seed(self.market.rloo_seed(), r),
            accuracy,
            entry.benign_mask,
            r,
            *[by_trainer.get(t, 0) for t in ledger.trainers],
            *[c % BN254_FIELD for c in contributions],
        ]

    def settlement(self) -> Iterator[AuditCheck]:
        if self.ledger.phase != "Settled":
            return
        if self.proven_settlement:
            yield self._proven_settlement()
            return
        yield from self._accuracy()
        if self.secure:
            yield from self.inclusion()
            return
        yield AuditCheck(
            name="contributions",
            status="trusted",
            detail="no settlement verifier: contributions are measured on updates only the aggregator can open",
        )

    def _proven_settlement(self) -> AuditCheck:
        """Every round's contribution proof verifies, and the settlement paid their sums and the
        mean of their accuracies."""
        ledger, verifier = self.ledger, self.market.settlement_verifier() or ""

        def check(args: dict, proof: bytes) -> str | None:
            r = int(args["round"])
            if self.market.verifier_accepts(verifier, proof, self.contribution_instances(r)):
                return None
            return f"round {r}: the settlement verifier rejects its contribution proof with the instances rebuilt from the chain"

        problems = self._proofs("ContributionsProven", check)
        rounds = int(ledger.spec["rounds"])
        if sorted(ledger.proven) != list(range(1, rounds + 1)):
            problems.append(f"contributions proven for rounds {sorted(ledger.proven)} of {rounds}")
        else:
            sums = [sum(v[i] for _, v in ledger.proven.values()) for i in range(len(ledger.trainers))]
            accuracy = sum(a for a, _ in ledger.proven.values()) // rounds
            if (ledger.accuracy_bps, ledger.contributions) != (accuracy, sums):
                problems.append(
                    f"settled at {ledger.accuracy_bps} bps with {ledger.contributions}; the proven rounds give "
                    f"{accuracy} bps and {sums}"
                )
        detail = "; ".join(problems) or (
            f"{rounds} contribution proofs verify against {verifier}, and the settlement paid their sums"
        )
        return AuditCheck(name="settlement", status="fail" if problems else "pass", detail=detail)

    def _accuracy(self) -> Iterator[AuditCheck]:
        """The final aggregate's accuracy on the test split the chain fixes, from the owner's data."""
        context = market_context(self.market, self.store)
        final = self.ledger.rounds[int(self.ledger.spec["rounds"])]
        model = decode_update(self.store.get(final.aggregate_cid or ""), context.spec.model)
        bps = int(accuracy(model, context.test, context.spec.model) * 10_000)
        if bps == self.ledger.accuracy_bps:
            yield AuditCheck(name="accuracy", status="pass", detail=f"{bps} bps, recomputed on the owner's test split")
        else:
            yield AuditCheck(
                name="accuracy",
                status="fail",
                detail=f"settled at {self.ledger.accuracy_bps} bps, the final aggregate scores {bps} on the test split",
            )


def audit_market(market: MarketClient, store: ContentStore, *, ledger: MarketLedger | None = None) -> AuditReport:
    """Every check, on the market as of the chain's head when the audit starts (a withdrawal
    landing mid-audit would otherwise part the events read from the views read after them)."""
    return Audit(market.at_head() if market.block == "latest" else market, store, ledger).run()
