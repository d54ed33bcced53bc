"""`two_stage_proven`: the outlier rule of a proven round, written once as a torch module. Run in
float64 here it is the rule (a registered detector); exported to ONNX by fedmarket/zk it is the
round circuit, so the rule and what the chain verifies are one piece of code. torch rather than
numpy for that reason alone: the module is what EZKL compiles.

It proves the steps of the default rule, `two_stage_guarded` (guarded.py), on what one proof can
afford: this round's models W_i (committed on chain: hashed, or under KZG commitments the proof
carries, fedmarket/zk/round_proof.py), the round's start model (committed likewise: the
contract's model commitment, last round's aggregate) and the previous benign mask.
With u_i = W_i - start and m the size of the reference set:
- present_i: slot i submitted this round and was not excluded (public, fixed by the contract);
  an absent slot counts nowhere, so its commitment needs no check;
- replay (replay.py): free-riders, ||u_i|| <= TOLERANCE x the median update norm, copies,
  ||W_i - W_j|| within the same bound, and near-copies, a nearest neighbour within NEAR_COPY x the
  median nearest-neighbour distance, are removed;
- cross-round (after round 1): cos(W_i, start) < COSINE removes the model, as stage 1 of
  sources/004 (section III.B) with its threshold 0.3;
- reference set: the trainers kept last round (public mask) still active, else (round 1, or none
  left) the m-Krum selection of the active ones (two_stage.reference_rows: m = reference_size(n),
  Krum's neighbour count krum.krum_neighbours with f the largest minority);
- vote: an update at a cosine below VOTE_COSINE with more than half of the other active updates is
  removed, and leaves the reference, unless half of the active updates or more are
  (two_stage.GUARDED_RULE's vote, one per trainer whatever its norm, so scaled colluders cannot
  outweigh an honest majority), tested as 10 u_i . u_j < -3 q_i q_j with the prover's update-norm
  roots q;
- direction: u_i . R < 0, R the sum of the reference's updates, removes the model and it leaves
  the reference, unless half of the active models or more point away (then the reference is what
  was captured, by colluders pushing against the honest update, and the check stands down);
- stage 2 (Algorithm 1 with the guarded rule's passes): y_i = ||m u_i - R||^2, s_i = sqrt(y_i)
  supplied by the prover and checked as the paper's square-root gadget does (s^2 <= y <=
  (s + step)^2, each side within `root_slack(L)` of the circuit's rounding); PASSES passes remove
  s_i > mu + sigma (sample sigma; n >= 3, a repeat pass n >= 4) that are also beyond the guard,
  both GUARD x the median and the median plus SPREAD median absolute deviations, over the models
  still active (the guarded rule's spread guard: where the honest distances spread wide, as small
  or rare-label shares do, the cut moves out with them);
- mask = the models still active (public output); valid: every root checks and the aggregate is
  the benign average, proven as a product (the paper's "trainers pre-divide" is replaced by
  k agg = sum of the k kept models, each entry within k/2 steps, the rounding of a mean; a
  round that keeps nobody must aggregate to its start model).

Every statistic comes from one Gram matrix of [u_1..u_L, start]: distances, norms, Krum's pairwise
distances, the direction's and the cosine's inner products. Its (L + 1)(L + 2) / 2 distinct
entries are each one dot product (`gram`), half of what X @ X.T multiplies; EZKL's Freivalds
check would do it in O(L d), but its verifier is over EIP-170 (fedmarket/zk/ezkl/toolchain.py).
Medians are read off sorting networks (order.py): O(L log^2 L) comparisons per ordered row,
where ranking every value against every other took L^2. Krum's orders (the k nearest of each
slot, the m best scores) are the prover's: one threshold per row, supplied with the roots, and
the circuit checks that exactly min(k, n) values lie at or below it, one comparison per value.
The prover computes the thresholds from the screen as the circuit rounds it (mode "grid", which
rounds each rescaled product as EZKL does), so they are the circuit's own, and so are the
distance roots it supplies: a reference the circuit's rounding chooses otherwise than float64
is still provable.
The only products over the L x d entries are that Gram matrix and the aggregate's `mask @ W`,
both sums over the parameters: a round past one proof's memory proves them by parameter chunks
and the rule over the chunks' sums (proven_split.py), each Gram entry then rounded once per chunk.
Under KZG-committed inputs the arithmetic and the inputs' range checks set the domain; hashed with
Poseidon, the hashing does (`fedmarket bench zk` reports both). No product multiplies more than
two model-sized values, so the range checks bound the same magnitudes as the distances'.

Departures from sources/004 and from `two_stage_guarded`, each for the circuit's sake, with what
`fedmarket bench robustness` measures of them (rows `two_stage_proven`):
- stage 2 runs every round (as the guarded rule), and stage 1 compares W_i with the start model
  instead of with the trainer's own previous model, which would commit L more models per proof;
  the start model is last round's aggregate, so this still measures a turn away from the last
  round. For the same reason the own-previous replay check is replaced by the direction check,
  which removes a replayed update (its deviation from last round's mean) as well as a flipped one;
- the guard is 1.75 x the median instead of 1.5: with flipped updates removed by direction before
  the distance cut, an honest trainer with rare data (Dirichlet splits) is otherwise cut every
  round; and a repeat pass needs 4 active models, not 3: of three models around a reference pair
  (m-Krum's m = 2 at n = 4), the third is always at least sqrt(3) x the pair's distance, so a
  repeat pass over three removes an honest model in nearly every small market;
- the replay tolerance is applied to squared norms against the median squared norm (equal to
  replay.py's for an odd count), and min(x, median) bounds the scaled value for the range checks;
- distances are measured as m u_i - R instead of W_i - R / m: the same distances times m, and
  the cut is scale-invariant, so the mask is the same without a division by a variable m;
- ties in Krum's neighbour and score orders go to the lower index, as krum.py;
- the reference set is chosen before the vote and loses the outvoted models (the default keeps
  round 1's m-Krum choice whole); chosen after it, from fewer models, m-Krum's m shrinks and honest
  rare-data trainers fall to the distance cut (the `sign_flip` rows under Dirichlet).

The public values also carry the market's domain (chain, market, round; its low 144 bits as 6
limbs of 24 bits), echoed as outputs, so a proof made for one round of one market verifies nowhere
else.

As a detector the rule sees only the trainers that submitted (its rows are the present slots);
the statement's ranks break ties within (L - 1) grid steps by slot index, so a round whose
distances tie that closely can differ between the two layouts, never otherwise. Where the
circuit's rounding decides a comparison differently from float64 (a model within a step of a
threshold), the circuit's mask is proven instead (round_proof.prove_round).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedmarket.algorithms.aggregators.base import assumed_byzantine
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput
from fedmarket.algorithms.outliers.krum import krum_neighbours
from fedmarket.algorithms.outliers.order import above_the_rest, extreme_last, sort_last
from fedmarket.algorithms.outliers.replay import NEAR_COPY, TOLERANCE
from fedmarket.algorithms.outliers.two_stage import reference_size
from fedmarket.fixed_point import STEP, domain_limbs, quantize
from fedmarket.packing import always_one, pack_pairs, unpack_pairs

PASSES = 3  # the guarded rule's passes (two_stage.GUARDED_RULE)
GUARD = 1.75  # the masking ratio (two_stage.GUARDED_RULE has 1.5; see the departures above)
# the spread guard, 2.5 x 1.4826 MADs (two_stage.GUARDED_RULE), on the grid so that the float rule
# and the circuit compare against the same constant
SPREAD = round(2.5 * 1.4826 / STEP) * STEP
TOLERANCE_INV_SQ = 1.0 / TOLERANCE**2  # replay.TOLERANCE, squared and moved to the other side
COSINE = 0.3  # stage 1's threshold (two_stage.PAPER_THRESHOLD), tested as 10 W.start < 3 |W| |start|
VOTE_COSINE = -0.3  # two_stage.GUARDED_RULE.vote_cosine, tested as 10 u_i.u_j < -3 |u_i| |u_j|
NEAR_COPY_SQ = NEAR_COPY**2  # on the grid (1/16): squared distances against the squared bound


def root_count(trainers: int) -> int:
    """How many roots the prover supplies: L distances, L + 1 model norms, L update norms."""
    return 3 * trainers + 1


def advice_count(trainers: int) -> int:
    """How many values the prover supplies: the roots, then the thresholds of Krum's orders (one
    per slot's neighbours, one for the scores)."""
    return root_count(trainers) + trainers + 1


def _grid(x: torch.Tensor) -> torch.Tensor:
    """x rounded onto the grid, half away from zero: what EZKL makes of a product it rescales."""
    return torch.sign(x) * torch.floor(x.abs() / STEP + 0.5) * STEP


def entry_error(chunks: int = 1) -> float:
    """How far a Gram entry of the circuit may sit from the exact one, in steps: EZKL rounds each
    product it rescales to within half a step, once per parameter chunk (fedmarket/zk/round_split.py
    proves a round's Gram matrix by chunks); counted as a whole step for one or two."""
    return max(1.0, chunks / 2)


def root_slack(trainers: int, chunks: int = 1) -> float:
    """How far the circuit's y may sit from the exact one: y weighs m^2 + 2 m m + m^2 = 4 m^2 Gram
    entries with m <= L, each within entry_error(chunks); plus one step for each square of the
    root. A prover may thus shift a root by at most slack / (2 s): the bound within which the
    proven rule may differ from the exact one, which is why, where the two part, the circuit's mask
    is the one proven (round_proof.prove_round)."""
    return (4 * trainers * trainers * entry_error(chunks) + 2) * STEP


def norm_slack(chunks: int = 1) -> float:
    """As root_slack for ||W_i||^2 = ||u_i||^2 + 2 u_i.start + ||start||^2: four Gram entries."""
    return (4 * entry_error(chunks) + 2) * STEP


def update_norm_slack(chunks: int = 1) -> float:
    """As root_slack for ||u_i||^2: one Gram entry."""
    return (entry_error(chunks) + 2) * STEP


def grid_sqrt(y: np.ndarray) -> np.ndarray:
    """The roots the prover supplies: the largest grid value s with s^2 <= y."""
    return np.floor(np.sqrt(np.maximum(np.asarray(y, dtype=np.float64), 0.0)) / STEP) * STEP


def _tied(values: torch.Tensor) -> torch.Tensor:
    """L v + l step along the last axis: on grid values (multiples of a step) this orders by value,
    then by index l < L, the tie rule of Krum's orders (krum.py), with every value distinct."""
    L = values.shape[-1]
    return values * float(L) + torch.arange(L, dtype=values.dtype) * STEP


def _smallest(
    values: torch.Tensor, among: torch.Tensor, k: torch.Tensor, threshold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, miss): chosen is 0/1 along the last axis, values[among] at or below `threshold` (one
    per row, the prover's: _kth); miss is |count - min(k, n)| per row, n = |among|. Values tied by
    index are distinct, so miss is 0 exactly when chosen is the k smallest of values[among] (all
    of them if fewer), ties to the lower index. n comparisons a row, where reading the k-th off a
    sorting network (order.py) took about n log^2 n / 4 comparators."""
    dtype = values.dtype
    chosen = among * (_tied(values) <= threshold).to(dtype)
    n = among.sum(dim=-1, keepdim=True)
    want = n + (k - n) * (k < n).to(dtype)
    return chosen, (chosen.sum(dim=-1, keepdim=True) - want).abs()


def _kth(values: torch.Tensor, among: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The prover's threshold for _smallest, per row: the k-th smallest of the tied values[among],
    the largest if fewer, a step below them all for k = 0, 0 on an empty row. Never exported."""
    tied = _tied(values)
    members = among > 0.5
    ordered = torch.where(members, tied, torch.inf).sort(dim=-1).values
    n = members.sum(dim=-1, keepdim=True)
    want = torch.minimum(k.round().long().expand_as(n), n)
    kth = ordered.gather(-1, (want - 1).clamp(min=0))
    below = ordered[..., :1] - STEP
    return torch.where(n == 0, torch.zeros_like(kth), torch.where(want == 0, below, kth))


def _least(values: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
    """0/1 along the last axis: the smallest of values[among], ties to the lower index, by a
    tournament (n comparisons a row, about what a threshold's check costs)."""
    tied = _tied(values)
    return among * (tied <= extreme_last(above_the_rest(tied, among, STEP))).to(values.dtype)


class ProvenRoundRule(nn.Module):
    """forward(*models, start, aggregate, hints) -> (flags, domain, mask, valid)

    models: L tensors [1, d]; start: [1, d], the round's global model; aggregate: [1, d]; with
    `packed`, start and aggregate are [1, ceil(d / 2)], two values per element (fedmarket/packing.py);
    hints: the prover's advice, then the public values, as one input (one commitment, checked by
    neither adapter: the circuit checks the advice, the outputs pin the public values),
    [1, 4L + 2 + 1 + 2L + DOMAIN_LIMBS]: roots [s_1..s_L (distances), r_1..r_L (model norms),
    r_start, q_1..q_L (update norms)], order [t_1..t_L (Krum's neighbours), t (Krum's scores)],
    public [first, present_1..L, kept_last_round_1..L, domain limbs].
    `mode`: "circuit" reads the order thresholds from the hints (the exported module); "float"
    derives them from its own values (_kth: the rule in float64); "grid" derives them too, with
    every product the screen rescales rounded as EZKL rounds it (_grid), so that its thresholds
    and distances are the circuit's own (circuit_advice).
    `chunks`: a round proven in that many parameter chunks (proven_split.py): the roots' slacks
    widen for it, and grid mode rounds each chunk's Gram products on their own, as the chunk
    proofs do.
    Outputs: flags = [first, present, kept last round] and mask and valid as 0/1 (scale 0), the
    domain limbs echoed (24-bit integers at scale 8: a limb x enters as x / 2^8), so the public
    tensor is pinned by the outputs and its commitment needs no check. Packed, valid also requires
    every packed element to unpack.
    """

    def __init__(self, trainers: int, dim: int, packed: bool = False, mode: str = "circuit", chunks: int = 1):
        super().__init__()
        if mode not in ("circuit", "float", "grid"):
            raise ValueError(f"mode is circuit, float or grid, not {mode!r}")
        self.trainers, self.dim, self.packed, self.mode, self.chunks = trainers, dim, packed, mode, chunks
        L = trainers
        idx = torch.arange(L + 1)
        self.register_buffer("diagonal", torch.eye(L + 1).double())
        self.register_buffer("not_self", (idx[:L, None] != idx[None, :L]).double())
        self.register_buffer("counts", torch.arange(1, L + 1).double()[None, :])
        per_n = {
            "k_of_n": [krum_neighbours(n, assumed_byzantine(n)) for n in range(1, L + 1)],
            "m_of_n": [reference_size(n) for n in range(1, L + 1)],
            "low_of_n": [(n - 1) // 2 for n in range(1, L + 1)],  # the median's two middle ranks
            "high_of_n": [n // 2 for n in range(1, L + 1)],
        }
        self.register_buffer("gram_index", gram_index(L + 1))
        # the aggregate's weights over the models and the start model: mask @ widen + nobody * start_slot
        self.register_buffer("widen", torch.eye(L, L + 1).double())
        self.register_buffer("start_slot", (idx == L).double()[None, :])
        for name, values in per_n.items():
            self.register_buffer(name, torch.tensor([[float(v) for v in values]], dtype=torch.float64))

    def forward(self, *inputs: torch.Tensor):
        L = self.trainers
        v = self.screen(*inputs)
        W, present, active = v["W"], v["present"], v["active"]
        roots, _, public = self._hints(inputs[-1])
        aggregate = self._aggregate(inputs, public)
        dtype = present.dtype

        # every root the prover supplied, checked within the circuit's rounding on each side
        s = roots[:, :L] * present
        root_ok = torch.cat(
            [
                _root_ok(s, v["y"], root_slack(L, self.chunks)),
                _root_ok(roots[:, L : 2 * L + 1], v["model_sq"], norm_slack(self.chunks)),
                _root_ok(roots[:, 2 * L + 1 :] * present, v["norms"] * present, update_norm_slack(self.chunks)),
            ],
            dim=1,
        )

        for pass_no in range(PASSES):
            active = active - self._beyond(s, active, 3 if pass_no == 0 else 4)

        mask = active
        # the aggregate is the benign average, and every order threshold selects as many as it must
        short = self._aggregate_short(aggregate, W, mask) + v["miss"]
        if self.packed:  # and every packed element of the start model and the aggregate unpacks
            short = short + v["start_short"].sum(dim=1, keepdim=True) + aggregate[1].sum(dim=1, keepdim=True)
        # every root checks, and nothing falls short: each term is >= 0 and below 2^43 steps (the
        # range checks' bound on |x|), so their sum is 0 only if every one is
        checks = root_ok.sum(dim=1, keepdim=True) + (short < STEP).to(dtype)
        valid = (checks > root_count(L) + 0.5).to(dtype)
        domain = public[:, 2 * L + 1 :]
        return v["flags"], domain, mask, valid

    def screen(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything before the mu + sigma passes: who is still active after the replay, the
        cross-round and the direction checks, and y_i = ||m u_i - R||^2 to the reference (the
        distance roots in `inputs` are not read, so the prover computes them from this)."""
        L = self.trainers
        roots, order, public = self._hints(inputs[-1])
        start, start_short = self._start(inputs, public)
        dtype = public.dtype
        flags = (public[:, : 2 * L + 1] > 0.5).to(dtype)  # [1, 1 + 2L]
        first, present, kept_before = flags[:, :1], flags[:, 1 : L + 1], flags[:, L + 1 :]
        # absent slots are not zeroed: every use below is masked by `present` (or a subset of it)
        H, W = self._gram(inputs, start)
        U, toward_start, start_sq = H[:L, :L], H[L:, :L], H[L:, L:]  # u_i.u_j, u_i.start, ||start||^2
        norms = (H * self.diagonal.to(dtype)).sum(dim=0, keepdim=True)[:, :L]  # [1, L]: ||u_i||^2
        D = norms.T + norms - 2.0 * U  # [L, L]: squared distances between the models
        pair = present.T * present * self.not_self.to(dtype)

        # replay: free-riders and copies, within TOLERANCE of the median update norm (squared, the
        # tolerance moved across; min(x, median) keeps 1 / TOLERANCE^2 x within the range checks)
        scale = self._median(norms, present)
        free = present * (_at_most(norms, scale) * TOLERANCE_INV_SQ <= scale).to(dtype)
        near = (pair * (_at_most(D, scale) * TOLERANCE_INV_SQ <= scale).to(dtype)).sum(dim=1, keepdim=True).T
        copies = (present - free) * (near > 0.5).to(dtype)
        # near-copies: the nearest present neighbour within NEAR_COPY of the median nearest distance
        nearest = _least(D, pair)
        partnered = (pair.sum(dim=1, keepdim=True).T > 0.5).to(dtype)
        nearest_sq = (nearest * D).sum(dim=1, keepdim=True).T  # [1, L]
        close = (nearest_sq <= self._rescaled(NEAR_COPY_SQ * self._median(nearest_sq, partnered))).to(dtype)
        near_copies = (present - free - copies) * partnered * close
        active = present - free - copies - near_copies

        # cross-round (after round 1): cos(W_i, start) < COSINE, start being last round's aggregate;
        # 10 W.start < 3 r_i r_start with the prover's norm roots (COSINE = 3 / 10)
        model_start = toward_start + start_sq  # [1, L]: W_i . start
        model_sq = torch.cat([norms + 2.0 * toward_start + start_sq, start_sq], dim=1)  # ||W_i||^2, ||start||^2
        r_model, r_start = roots[:, L : 2 * L], roots[:, 2 * L : 2 * L + 1]
        later = (first < 0.5).to(dtype)  # a comparison, so 0/1 at scale 0 (1.0 - first is not)
        turned = active * later * (10.0 * model_start < self._rescaled(3.0 * r_model * r_start)).to(dtype)
        active = active - turned

        # the reference is chosen before the vote and loses the outvoted models: chosen after, from
        # fewer models, m-Krum's m shrinks with them and the honest distances spread wider
        selected, order, miss = self._reference(D, active, kept_before, first, order)

        # vote: below VOTE_COSINE with more than half of the other active updates (at least 3
        # active), 10 u_i.u_j < -3 q_i q_j with the prover's update-norm roots q
        q = roots[:, 2 * L + 1 :]
        against = (10.0 * U < (10.0 * VOTE_COSINE) * self._rescaled(q.T * q)).to(dtype)
        votes = (active.T * active * self.not_self.to(dtype) * against).sum(dim=1, keepdim=True).T
        n_active = active.sum(dim=1, keepdim=True)
        outvoted = active * (votes + votes > n_active - 0.5).to(dtype) * (n_active > 2.5).to(dtype)
        # a majority: where half of the active models or more are outvoted (two camps), none is
        outvoted = outvoted * (2.0 * outvoted.sum(dim=1, keepdim=True) < n_active).to(dtype)
        active = active - outvoted
        selected = selected - selected * outvoted

        # direction: an update pointing away from the reference's (u_i . R < 0) is removed, and the
        # reference taken again without it; unless that is half of the active models or more,
        # which says the reference itself was captured (colluders pushing against the honest)
        away = active * (selected @ U < 0).to(dtype)
        minority = (2.0 * away.sum(dim=1, keepdim=True) < active.sum(dim=1, keepdim=True)).to(dtype)
        away = away * minority
        active = active - away
        selected = selected - selected * away

        # ||m u_i - R||^2 = m^2 ||u_i||^2 - 2 m u_i . R + R . R, R the sum of the m selected updates
        m = selected.sum(dim=1, keepdim=True)
        toward = selected @ U
        reference_sq = (toward * selected).sum(dim=1, keepdim=True)
        y = (m * m * norms - 2.0 * m * toward + reference_sq) * present
        return {
            "W": W,
            "flags": flags,
            "present": present,
            "active": active,
            "y": y,
            "model_sq": model_sq,
            "norms": norms,
            "free": free,
            "copies": copies,
            "near_copies": near_copies,
            "turned": turned,
            "outvoted": outvoted,
            "away": away,
            "start_short": start_short,
            "order": order,
            "miss": miss,
        }

    def _start(self, inputs: tuple[torch.Tensor, ...], public: torch.Tensor):
        """The start model input as _global_model reads it: (start [1, d], short or None)."""
        return self._global_model(inputs[self.trainers], public)

    def _gram(self, inputs: tuple[torch.Tensor, ...], start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W): the Gram matrix of [u_1..u_L, start] and the models, then the start model, as
        [L + 1, d]."""
        L = self.trainers
        models = inputs[:L]
        # [L + 1, d]: the models, then the start model, concatenated along d: stacked along L, the
        # exporter splits the aggregate's product into one product and sum per slot
        W = torch.cat([*models, start], dim=1).reshape(L + 1, self.dim)
        # of the updates and the start model: the only product over the L x d entries besides the aggregate's
        rows = [m - start for m in models] + [start]
        if self.chunks == 1:
            products = gram_products(rows, self._rescaled)
        else:  # as the chunk proofs round them: each chunk's products on its own
            products = sum(
                gram_products([row[:, part] for row in rows], self._rescaled)
                for part in chunk_slices(self.dim, self.chunks)
            )
        return gather_gram(products, self.gram_index), W

    def _aggregate(self, inputs: tuple[torch.Tensor, ...], public: torch.Tensor):
        """The aggregate input as _global_model reads it: (aggregate [1, d], short or None)."""
        return self._global_model(inputs[self.trainers + 1], public)

    def _aggregate_short(self, aggregate, W: torch.Tensor, benign: torch.Tensor) -> torch.Tensor:
        """[1, 1], 0 where `aggregate` (from _aggregate) is the average of the models `benign` keeps,
        positive where not."""
        return aggregate_shortfall(benign, W, aggregate[0], self.widen, self.start_slot)

    def _hints(self, hints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(roots, order thresholds, public) from the hints input."""
        roots, advice = root_count(self.trainers), advice_count(self.trainers)
        return hints[:, :roots], hints[:, roots:advice], hints[:, advice:]

    def _rescaled(self, product: torch.Tensor) -> torch.Tensor:
        """A product EZKL rescales, as the circuit has it in "grid" mode (_grid), else as it is."""
        return _grid(product) if self.mode == "grid" else product

    def _threshold(self, values: torch.Tensor, among: torch.Tensor, k: torch.Tensor, hint: torch.Tensor):
        """The order threshold _smallest compares with: the hint in the circuit, else derived."""
        return hint if self.mode == "circuit" else _kth(values, among, k)

    def _global_model(self, model: torch.Tensor, public: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A global model input as [1, d], with how far each element falls short of unpacking when
        it comes packed (fedmarket/packing.py: the hashed build's start model and aggregate)."""
        if not self.packed:
            return model, None
        return unpack_pairs(model, self.dim, always_one(public[:, :1]))

    def _of_n(self, table: str, n: torch.Tensor) -> torch.Tensor:
        """table[n] for a count n in 1..L ([1, 1]); 0 for n = 0."""
        counts = self.counts.to(n.dtype)
        onehot = (n > counts - 0.5).to(n.dtype) * (n < counts + 0.5).to(n.dtype)
        return (onehot * getattr(self, table).to(n.dtype)).sum(dim=1, keepdim=True)

    def _median(self, values: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
        """Median of values[among] ([1, 1]): the mean of the two middle ranks (one when n is odd)."""
        n = among.sum(dim=1, keepdim=True)
        dtype = values.dtype
        ordered = sort_last(above_the_rest(values, among, STEP))
        position = self.counts.to(dtype) - 1.0
        middle = 0.0
        for table in ("low_of_n", "high_of_n"):
            at = self._of_n(table, n)
            middle = middle + (position > at - 0.5).to(dtype) * (position < at + 0.5).to(dtype)
        return self._rescaled(0.5 * (middle * ordered).sum(dim=1, keepdim=True)) * (n > 0.5).to(dtype)

    def _beyond(self, s: torch.Tensor, active: torch.Tensor, minimum: int) -> torch.Tensor:
        """One guarded pass of Algorithm 1 over the active slots, if at least `minimum` are:
        s_i > mu + sigma (sample sigma), s_i > GUARD x median and s_i > median + SPREAD x MAD,
        without division or square root: a_i = n s_i - sum(s) > 0,
        a_i^2 (n - 1) > n (n sum(s^2) - sum(s)^2), 2 s_i > 2 GUARD median and
        s_i - median > SPREAD median(|s - median|)."""
        dtype = s.dtype
        s = s * active
        n = active.sum(dim=1, keepdim=True)
        total, total_sq = s.sum(dim=1, keepdim=True), (s * s).sum(dim=1, keepdim=True)
        a = n * s - total
        spread = n * (n * total_sq - total * total)
        beyond = (a > 0).to(dtype) * ((a * a) * (n - 1.0) > spread).to(dtype)
        median = self._median(s, active)
        deviation = s - median
        mad = self._median(deviation.abs() * active, active)
        guarded = (s + s > 2.0 * GUARD * median).to(dtype) * (deviation > SPREAD * mad).to(dtype)
        return active * beyond * guarded * (n > minimum - 0.5).to(dtype)

    def _reference(
        self, D: torch.Tensor, among: torch.Tensor, kept_before: torch.Tensor, first: torch.Tensor, order: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reference, thresholds, miss): the reference set within `among`, last round's kept
        trainers, else (round 1, or none of them left) the m-Krum selection (m = reference_size(n),
        n = |among|) by the squared distances D; the order thresholds it used ([1, L + 1], the
        hints' `order` in the circuit) and how far they miss (0 when each selects the k smallest)."""
        dtype = D.dtype
        L = self.trainers
        n = among.sum(dim=1, keepdim=True)
        pair = among.T * among * self.not_self.to(dtype)
        k, m = self._of_n("k_of_n", n), self._of_n("m_of_n", n)
        neighbours = self._threshold(D, pair, k, order[:, :L].T)  # [L, 1]
        nearest, miss = _smallest(D, pair, k, neighbours)
        score = (nearest * D).sum(dim=1, keepdim=True).T  # [1, L]
        scores = self._threshold(score, among, m, order[:, L:])
        krum, krum_miss = _smallest(score, among, m, scores)
        benign = kept_before * among
        use_krum = (first + (benign.sum(dim=1, keepdim=True) < 0.5).to(dtype) > 0.5).to(dtype)
        thresholds = torch.cat([neighbours.T, scores], dim=1)
        return benign + use_krum * (krum - benign), thresholds, miss.sum(dim=0, keepdim=True) + krum_miss


def gram_index(rows: int) -> torch.Tensor:
    """For each Gram entry (i, j), its place among the products of the rows i <= j in order."""
    index = torch.empty(rows, rows, dtype=torch.long)
    pairs = [(i, j) for i in range(rows) for j in range(i, rows)]
    for place, (i, j) in enumerate(pairs):
        index[i, j] = index[j, i] = place
    return index


def gram_products(rows: list[torch.Tensor], rescaled=lambda product: product) -> torch.Tensor:
    """[1, n (n + 1) / 2]: the distinct entries of the Gram matrix of `rows` ([1, d] each), each
    one dot product (`rescaled`, ProvenRoundRule._rescaled), rows i <= j in order."""
    n = len(rows)
    return torch.cat([rescaled(rows[i] @ rows[j].T) for i in range(n) for j in range(i, n)], dim=1)


def gather_gram(products: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The Gram matrix from its distinct entries, placed by `index` (gram_index; a gather with
    constant indices adds no rows to the circuit)."""
    n = index.shape[0]
    return products.reshape(-1)[index.reshape(-1)].reshape(n, n)


def gram(rows: list[torch.Tensor], index: torch.Tensor, rescaled=lambda product: product) -> torch.Tensor:
    """The Gram matrix of `rows` ([1, d] each), each distinct entry one dot product."""
    return gather_gram(gram_products(rows, rescaled), index)


def chunk_slices(dim: int, chunks: int) -> list[slice]:
    """The parameter chunks of a round proven by chunks: `chunks` runs of chunk_size(dim, chunks)
    parameters, the last one shorter where they do not divide d (padded with zeros in its proof)."""
    size = chunk_size(dim, chunks)
    return [slice(k * size, min(dim, (k + 1) * size)) for k in range(chunks)]


def chunk_size(dim: int, chunks: int) -> int:
    """Parameters per chunk: d / chunks rounded up to an even count (a packed pair never straddles
    two chunks)."""
    size = -(-dim // chunks) if chunks >= 1 else 0
    size += size % 2
    if chunks < 1 or (chunks - 1) * size >= dim:
        raise ValueError(f"{dim} parameters do not split into {chunks} chunks of an even size, none of them empty")
    return size


def aggregate_shortfall(benign, W, aggregate, widen, start_slot) -> torch.Tensor:
    """[1, 1]: 0 where k aggregate = the sum of the k models `benign` keeps (rows of W [L + 1, d],
    the start model last), each entry within k / 2 steps (the rounding of a mean); positive where
    not. A round that keeps nobody keeps its global model: k agg = sum of none holds for any
    aggregate, so there the start model stands in as the one model kept."""
    dtype = W.dtype
    kept = benign.sum(dim=1, keepdim=True)
    nobody = (kept < 0.5).to(dtype)
    # (a product with constants, not a concatenation, which the exporter would split again)
    weights = benign @ widen.to(dtype) + nobody * start_slot.to(dtype)  # [1, L + 1]
    residual = (kept + nobody) * aggregate - weights @ W
    # |2 residual| <= k steps on every entry, as x = k steps - |2 residual| >= 0: |x| - x is 0
    # where it holds and positive where not (half a comparison's rows, packing.py)
    within = kept * STEP - (residual + residual).abs()
    return (within.abs() - within).sum(dim=1, keepdim=True)


def _at_most(values: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """min(values, bound) as a product, not a Clip: EZKL range-checks the difference anyway."""
    return bound + (values - bound) * (values < bound).to(values.dtype)


def _root_ok(r: torch.Tensor, y: torch.Tensor, slack: float) -> torch.Tensor:
    """r >= 0, r^2 <= y + slack and (r + step)^2 >= y - slack, elementwise as 0/1."""
    dtype = r.dtype
    return (r >= 0).to(dtype) * (r * r <= y + slack).to(dtype) * ((r + STEP) * (r + STEP) >= y - slack).to(dtype)


PROVEN_DETECTOR = "two_stage_proven"


def statement_inputs(
    slots: list[np.ndarray | None],
    start: np.ndarray,
    first: bool,
    kept_before: list[bool],
    domain: int,
    aggregate: np.ndarray,
    advice: np.ndarray,
    packed: bool = False,
) -> list[np.ndarray]:
    """The module's inputs for slots on the grid (None: no submission), in its order, `advice` the
    prover's roots and order thresholds (circuit_advice); with `packed`, the start model and
    the aggregate two values per element (ProvenRoundRule(packed))."""
    dim = int(np.asarray(start).size)
    models = [np.zeros((1, dim)) if m is None else np.asarray(m, dtype=np.float64).reshape(1, dim) for m in slots]
    present = [0.0 if m is None else 1.0 for m in slots]
    public = np.concatenate([[1.0 if first else 0.0], present, [float(k) for k in kept_before], domain_limbs(domain)])
    pack = pack_pairs if packed else lambda model: np.asarray(model, dtype=np.float64)
    hints = np.concatenate([np.asarray(advice, dtype=np.float64).ravel(), public])
    return [*models, pack(start).reshape(1, -1), pack(aggregate).reshape(1, -1), hints.reshape(1, -1)]


def _rule_inputs(
    slots: list[np.ndarray | None], start: np.ndarray, first: bool, kept_before: list[bool], domain: int, advice
) -> list[torch.Tensor]:
    """statement_inputs as float64 tensors, with a zero aggregate (neither the screen nor the mask
    reads it)."""
    inputs = statement_inputs(slots, start, first, kept_before, domain, np.zeros_like(start), advice)
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in inputs]


@dataclass(frozen=True)
class ProvenVerdict:
    """The rule in float64 over one round's slots: the mask, the roots it used (grid_sqrt(y)), the
    squared distances y and, per slot, why it was left out ("" if kept)."""

    mask: np.ndarray
    roots: np.ndarray
    y: np.ndarray
    reasons: list[str]


def float_verdict(
    slots: list[np.ndarray | None], start: np.ndarray, first: bool, kept_before: list[bool], domain: int = 0
) -> ProvenVerdict:
    """The module run in float64 over grid slots, with the roots it needs: the norm roots from the
    inputs, then the distance roots from the screen's y."""
    start = np.asarray(start, dtype=np.float64).ravel()
    rule = ProvenRoundRule(len(slots), start.size, mode="float").double()
    models = [np.zeros_like(start) if m is None else np.asarray(m, dtype=np.float64).ravel() for m in slots]
    norm_roots = grid_sqrt(
        [*(float(m @ m) for m in models), float(start @ start), *(float((m - start) @ (m - start)) for m in models)]
    )

    def run(distance_roots: np.ndarray):
        advice = np.concatenate([distance_roots, norm_roots, np.zeros(len(slots) + 1)])  # order: derived
        return _rule_inputs(slots, start, first, kept_before, domain, advice)

    with torch.no_grad():
        screen = rule.screen(*run(np.zeros(len(slots))))
        y = screen["y"].numpy()[0]
        roots = np.concatenate([grid_sqrt(y), norm_roots])
        _, _, mask, _ = rule(*run(roots[: len(slots)]))
    mask = mask.numpy()[0] > 0.5
    why = {
        name: screen[name].numpy()[0] > 0.5 for name in ("free", "copies", "near_copies", "turned", "outvoted", "away")
    }
    reasons = [
        ""
        if mask[i] or slots[i] is None
        else "free-riding: update within the tolerance of the median (proven rule)"
        if why["free"][i]
        else "copy: within the tolerance of another model (proven rule)"
        if why["copies"][i]
        else f"near-copy: nearest model within {NEAR_COPY:g} x the median nearest distance (proven rule)"
        if why["near_copies"][i]
        else f"cross-round: cosine with the global model < {COSINE} (proven rule)"
        if why["turned"][i]
        else f"update at a cosine < {VOTE_COSINE:g} with most other updates (proven rule)"
        if why["outvoted"][i]
        else "update points away from the reference's (proven rule)"
        if why["away"][i]
        else f"distance {roots[i]:.4g} (x m) to the reference above mu + sigma (proven rule)"
        for i in range(len(slots))
    ]
    return ProvenVerdict(mask, roots, y, reasons)


def circuit_advice(
    slots: list[np.ndarray | None],
    start: np.ndarray,
    first: bool,
    kept_before: list[bool],
    domain: int,
    roots: np.ndarray,
    chunks: int = 1,
) -> np.ndarray:
    """What the prover supplies the circuit beside the inputs, from the screen run as the circuit
    computes it (mode "grid", its Gram matrix proven in `chunks` parameter chunks): the roots, the distance roots float64's (`roots`, ProvenVerdict)
    where they check against the circuit's y (a step inside the slack, for the rounding of their
    squares), so that the circuit's passes compare what float64's do, else the roots of the
    circuit's y (where its rounding chose another reference); then Krum's order thresholds."""
    L = len(slots)
    start = np.asarray(start, dtype=np.float64).ravel()
    advice = np.concatenate([roots, np.zeros(L + 1)])  # order: derived
    with torch.no_grad():
        screen = (
            ProvenRoundRule(L, start.size, mode="grid", chunks=chunks)
            .double()
            .screen(*_rule_inputs(slots, start, first, kept_before, domain, advice))
        )
    y, slack = screen["y"].numpy()[0], root_slack(L, chunks)
    distance = roots[:L]
    fits = (distance * distance <= y + slack - STEP) & ((distance + STEP) ** 2 >= y - slack + STEP)
    return np.concatenate([np.where(fits, distance, grid_sqrt(y)), roots[L:], screen["order"].numpy()[0]])


@DETECTORS.register(PROVEN_DETECTOR)
def two_stage_proven(round: RoundInput, history: History) -> Detection:
    """The proven rule on this round's submissions, rounded onto the grid as a proven market's are."""
    if round.size == 0:
        return Detection.keeping(0, {})
    models = [quantize(row) for row in np.asarray(round.models, dtype=np.float64)]
    kept_before = [t in history.last_kept for t in round.trainers]
    verdict = float_verdict(models, quantize(round.start), round.round <= 1, kept_before)
    reasons = {i: why for i, why in enumerate(verdict.reasons) if why}
    return Detection.keeping(
        round.size, reasons, cross_trainer_scores={i: float(r) for i, r in enumerate(verdict.roots)}
    )
