"""`two_stage_proven`: the outlier rule of a proven round, written once as a torch module. Run in
float64 here it is the rule (a registered detector); exported to ONNX by fedmarket/zk it is the
round circuit, so the rule and what the chain verifies are one piece of code. torch rather than
numpy for that reason alone: the module is what EZKL compiles.

Statement (sources/004, Algorithm 1 and section IV.C, "ZKP for outlier detection / aggregation"):
for L trainer slots with models W_i (hashed: the commitments on chain) and a claimed aggregate
(hashed: its commitment),
- present_i: slot i submitted this round (public, fixed by the contract); an absent slot counts
  nowhere, so its hash instance needs no check;
- reference set: in round 1 (public flag `first`) the m-Krum selection of two_stage.reference_rows
  (m = reference_size(n), Krum's neighbour count krum.krum_neighbours with f the largest
  minority); afterwards the trainers kept last round (public, the contract's previous benign mask)
  that are present, or m-Krum again if none of them is;
- with S the sum of the m models of the reference set, y_i = ||m W_i - S||^2: the squared distance
  to the reference average, times m^2;
- s_i = sqrt(y_i), supplied by the prover and checked as the paper's square-root gadget does
  (s^2 <= y <= (s + step)^2, here each side within `root_slack(L)` of the circuit's rounding);
- flagged_i: s_i > mu + sigma over the present slots (sample sigma, n >= 3), tested without
  division or square root: a_i = n s_i - sum(s) > 0 and a_i^2 (n - 1) > n (n sum(s^2) - sum(s)^2);
- mask = present and not flagged (public output);
- valid: every root checks and the aggregate is the benign average, proven as a product
  (the paper's "trainers pre-divide" is replaced by k agg = sum of the k kept models, each entry
  within k/2 steps, the rounding of a mean on the grid).

Every distance comes from one Gram matrix G = W W^T: ||m W_i - S||^2 = m^2 G_ii - 2 m (G sel)_i +
sel^T G sel, and Krum's pairwise distances are G_ii + G_jj - 2 G_ij. The only products over the
L x d entries are G and the aggregate's `mask @ W`, so the circuit's rows are dominated by the
Poseidon hashing of its inputs (`fedmarket bench zk` reports both).

Departures from sources/004 (and one reading of it), each for the circuit's sake:
- stage 2 runs every round and stage 1 (the cross-round cosine) is left out: in the paper stage 1
  only decides whether stage 2 runs, so running it always keeps every model the paper keeps
  removed or more; it saves hashing the previous round's L models in every proof;
- after round 1 the reference is the average of this round's models from last round's benign
  trainers, with m-Krum when none of them submitted (two_stage.reference_rows' reading of the
  paper's "in other training rounds, the average is computed by simply averaging all benign
  trainer models"); reading the benign set as a public mask keeps the start model (d more hashed
  values) out of the proof;
- distances are measured as m W_i - S instead of W_i - S / m: the same distances times m, and the
  mu + sigma cut is scale-invariant, so the mask is the same without a division by a variable m;
- ties in Krum's neighbour and score orders go to the lower index, as krum.py.

The public tensor also carries the market's domain (chain, market, round; its low 144 bits as 6
limbs of 24 bits), echoed as outputs, so a proof made for one round of one market verifies nowhere
else.

As a detector the rule sees only the trainers that submitted (its rows are the present slots);
the statement's ranks break ties within (L - 1) grid steps by slot index, so a round whose
distances tie that closely can differ between the two layouts, never otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmarket.algorithms.aggregators.base import assumed_byzantine
from fedmarket.algorithms.outliers.base import DETECTORS, Detection, History, RoundInput
from fedmarket.algorithms.outliers.krum import krum_neighbours
from fedmarket.algorithms.outliers.two_stage import reference_size
from fedmarket.fixed_point import STEP, domain_limbs, quantize


def root_slack(trainers: int) -> float:
    """How far the circuit's y may sit from the exact one: EZKL rounds each Gram entry onto the
    grid once (within a step), and y weighs m^2 + 2 m m + m^2 = 4 m^2 such entries with m <= L;
    plus one step for each square of the root. A prover may thus shift a root by at most
    slack / (2 s): the bound within which the proven rule may differ from the exact one, which is
    why the float mask is checked equal to the circuit's."""
    return (4 * trainers * trainers + 2) * STEP


def grid_sqrt(y: np.ndarray) -> np.ndarray:
    """The roots the prover supplies: the largest grid value s with s^2 <= y."""
    return np.floor(np.sqrt(np.maximum(np.asarray(y, dtype=np.float64), 0.0)) / STEP) * STEP


def _rank(values: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
    """rank[..., j] = #{l in `among`: values[..., l] < values[..., j], ties to the lower l}.

    One strict comparison per pair: on grid values (multiples of a step) L v + l step orders by
    value, then by index l < L, which is the tie rule (half the comparisons of testing <= for
    l < j and < for l > j, and no Equal, whose 0/1 EZKL 23 gives the input's scale)."""
    L = values.shape[-1]
    tied = values * float(L) + torch.arange(L, dtype=values.dtype) * STEP
    before = (tied.unsqueeze(-1) < tied.unsqueeze(-2)).to(values.dtype)  # [..., l, j]
    return (before * among.unsqueeze(-1)).sum(dim=-2)


class ProvenRoundRule(nn.Module):
    """forward(*models, aggregate, roots, public) -> (flags, domain, mask, valid)

    models: L tensors [1, d]; aggregate: [1, d]; roots: [1, L]; public: [1, 1 + 2L + DOMAIN_LIMBS] =
    [first, present_1..L, kept_last_round_1..L, domain limbs]. Outputs: flags = [first, present,
    kept last round] and mask and valid as 0/1 (scale 0), the domain limbs echoed (24-bit integers
    at scale 8: a limb x enters as x / 2^8), so the public tensor is pinned by the outputs and its
    hash needs no check.
    """

    def __init__(self, trainers: int, dim: int):
        super().__init__()
        self.trainers, self.dim = trainers, dim
        L = trainers
        idx = torch.arange(L)
        self.register_buffer("diagonal", torch.eye(L).double())
        self.register_buffer("not_self", (idx[:, None] != idx[None, :]).double())
        self.register_buffer("counts", torch.arange(1, L + 1).double()[None, :])
        k_of_n = [float(krum_neighbours(n, assumed_byzantine(n))) for n in range(1, L + 1)]
        self.register_buffer("k_of_n", torch.tensor([k_of_n]))
        self.register_buffer("m_of_n", torch.tensor([[float(reference_size(n)) for n in range(1, L + 1)]]))

    def squared_distances(self, *inputs: torch.Tensor) -> torch.Tensor:
        """y_i = ||m W_i - S||^2 ([1, L]), from the same inputs as forward (roots unused): the
        prover's roots are grid_sqrt(y)."""
        return self._distances(*inputs)[0]

    def forward(self, *inputs: torch.Tensor):
        y, W, flags, present, n = self._distances(*inputs)
        aggregate, roots = inputs[self.trainers], inputs[self.trainers + 1]
        dtype = y.dtype

        # the prover's square roots, checked within the circuit's rounding of y on each side
        s = roots * present
        slack = root_slack(self.trainers)
        root_ok = (s >= 0).to(dtype) * (s * s <= y + slack).to(dtype) * ((s + STEP) * (s + STEP) >= y - slack).to(dtype)

        # mu + sigma without division or square root
        total, total_sq = s.sum(dim=1, keepdim=True), (s * s).sum(dim=1, keepdim=True)
        a = n * s - total
        spread = n * (n * total_sq - total * total)
        beyond = (a > 0).to(dtype) * ((a * a) * (n - 1.0) > spread).to(dtype)
        flagged = present * beyond * (n > 2.5).to(dtype)
        mask = present - flagged

        # the aggregate: kept * aggregate == sum of kept models, within the mean's rounding
        kept = mask.sum(dim=1, keepdim=True)
        residual = kept * aggregate - mask @ W
        agg_ok = ((residual + residual).abs() <= kept * STEP).to(dtype)
        checks = root_ok.sum(dim=1, keepdim=True) + agg_ok.sum(dim=1, keepdim=True)  # all L + d hold
        valid = (checks > self.trainers + self.dim - 0.5).to(dtype)
        domain = inputs[-1][:, 2 * self.trainers + 1 :]
        return flags, domain, mask, valid

    def _distances(self, *inputs: torch.Tensor):
        L = self.trainers
        models, public = inputs[:L], inputs[-1]
        dtype = public.dtype
        flags = (public[:, : 2 * L + 1] > 0.5).to(dtype)  # [1, 1 + 2L]
        first, present, kept_before = flags[:, :1], flags[:, 1 : L + 1], flags[:, L + 1 :]
        # absent slots are not zeroed: every use below is masked by `present` (or a subset of it)
        W = torch.cat(models, dim=0)  # [L, d]
        G = W @ W.T  # [L, L]: the only product over the L x d entries besides the aggregate's
        sq = (G * self.diagonal.to(dtype)).sum(dim=1, keepdim=True)  # [L, 1]: ||W_i||^2
        n = present.sum(dim=1, keepdim=True)  # [1, 1]: EZKL wants no 0-d tensors

        # round 1 (or no one kept last round is present): m-Krum over the present slots
        D = sq + sq.T - 2.0 * G  # [L, L] squared distances
        counts = self.counts.to(dtype)
        onehot = (n > counts - 0.5).to(dtype) * (n < counts + 0.5).to(dtype)  # n one-hot over 1..L
        k = (onehot * self.k_of_n.to(dtype)).sum(dim=1, keepdim=True)
        m_krum = (onehot * self.m_of_n.to(dtype)).sum(dim=1, keepdim=True)
        pair = present.T * present * self.not_self.to(dtype)  # [i, j]: both present, i != j
        neighbour_rank = _rank(D, pair)  # [i, j] within row i
        nearest = pair * (neighbour_rank < k).to(dtype)
        score = (nearest * D).sum(dim=1, keepdim=True).T  # [1, L]
        score_rank = _rank(score, present)
        krum = present * (score_rank < m_krum).to(dtype)  # [1, L]

        # later rounds: last round's benign trainers, present now; the choice as one 0/1 product
        benign = kept_before * present
        use_krum = 1.0 - (1.0 - first) * (benign.sum(dim=1, keepdim=True) > 0.5).to(dtype)
        selected = benign + use_krum * (krum - benign)
        m = selected.sum(dim=1, keepdim=True)

        # ||m W_i - S||^2 = m^2 G_ii - 2 m W_i.S + S.S, with W_i.S = (selected G)_i
        towards = selected @ G  # [1, L]
        reference_sq = (towards * selected).sum(dim=1, keepdim=True)
        y = (m * m * sq.T - 2.0 * m * towards + reference_sq) * present  # [1, L]
        return y, W, flags, present, n


PROVEN_DETECTOR = "two_stage_proven"


def statement_inputs(
    slots: list[np.ndarray | None],
    dim: int,
    first: bool,
    kept_before: list[bool],
    domain: int,
    aggregate: np.ndarray,
    roots: np.ndarray,
) -> list[np.ndarray]:
    """The module's inputs for slots on the grid (None: no submission), in its order."""
    models = [np.zeros((1, dim)) if m is None else np.asarray(m, dtype=np.float64).reshape(1, dim) for m in slots]
    present = [0.0 if m is None else 1.0 for m in slots]
    public = np.concatenate([[1.0 if first else 0.0], present, [float(k) for k in kept_before], domain_limbs(domain)])
    return [*models, np.asarray(aggregate).reshape(1, dim), np.asarray(roots).reshape(1, -1), public.reshape(1, -1)]


def float_mask(
    slots: list[np.ndarray | None], first: bool, kept_before: list[bool], domain: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rule in float64 over grid slots: (mask, roots, squared distances y), with the roots the
    prover supplies (grid_sqrt(y))."""
    dim = next(int(np.asarray(m).size) for m in slots if m is not None)
    rule = ProvenRoundRule(len(slots), dim).double()

    def run(roots: np.ndarray):
        inputs = statement_inputs(slots, dim, first, kept_before, domain, np.zeros(dim), roots)
        return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in inputs]

    with torch.no_grad():
        y = rule.squared_distances(*run(np.zeros(len(slots)))).numpy()[0]
        roots = grid_sqrt(y)
        _, _, mask, _ = rule(*run(roots))
    return mask.numpy()[0] > 0.5, roots, y


@DETECTORS.register(PROVEN_DETECTOR)
def two_stage_proven(round: RoundInput, history: History) -> Detection:
    """The proven rule on this round's submissions, rounded onto the grid as a proven market's are."""
    if round.size == 0:
        return Detection.keeping(0, {})
    models = [quantize(row) for row in np.asarray(round.models, dtype=np.float64)]
    kept_before = [t in history.last_kept for t in round.trainers]
    mask, roots, _ = float_mask(models, round.round <= 1, kept_before)
    reasons = {
        i: f"distance {roots[i]:.4g} (x m) to the reference above mu + sigma (proven rule)"
        for i in range(round.size)
        if not mask[i]
    }
    return Detection.keeping(round.size, reasons, cross_trainer_scores={i: float(r) for i, r in enumerate(roots)})
