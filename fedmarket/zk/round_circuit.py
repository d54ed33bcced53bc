"""The round statement as a torch module: exported to ONNX for EZKL, and run in float64 as the
float rule it proves (round_proof.evaluate), so both are one piece of code.

Statement (sources/004, Algorithm 1 and section IV.C, "ZKP for outlier detection / aggregation"):
for L trainer slots with models W_i (hashed: the commitments on chain), the round's start model
(hashed: the global model commitment) and a claimed aggregate (hashed: its commitment),
- present_i: slot i submitted this round (public, fixed by the contract); absent slots are zeroed
  and count nowhere, so their hash instance needs no check;
- reference: the m-Krum average (m = n // 2, f = (n - 1) // 2 neighbours rule of Blanchard 2017)
  in round 1 (public flag `first`), the start model afterwards (the average of the trainers kept
  last round, which is what the start model is);
- s_i = ||W_i - reference||, supplied by the prover and checked as the paper's square-root gadget
  does (s^2 <= y <= (s + step)^2, here each side within `root_slack(d)` of the circuit's rounding);
- flagged_i: s_i > mu + sigma over the present slots (sample sigma, n >= 3), tested without
  division or square root: a_i = n s_i - sum(s) > 0 and a_i^2 (n - 1) > n (n sum(s^2) - sum(s)^2);
- mask = present and not flagged (public output);
- valid: every root checks and the aggregate is the benign average, proven as a product
  (the paper's "trainers pre-divide" is replaced by k agg = sum of the k kept models, each entry
  within k/2 steps, the rounding of a mean on the grid).

Departures from sources/004, each for the circuit's sake:
- stage 2 runs every round and stage 1 (the cross-round cosine) is left out: in the paper stage 1
  only decides whether stage 2 runs, so running it always keeps every model the paper keeps
  removed or more; it saves hashing the previous round's L models in every proof;
- round 1 measures distances to m * W_i - sum(selected) instead of W_i - avg(selected): the same
  distances times m, and the mu + sigma cut is scale-invariant, so the mask is the same without a
  division by a variable m;
- ties in Krum's neighbour and score orders go to the lower index, as tasks/outliers/krum.py.

The public tensor also carries the market's domain (chain, market, round; its low 144 bits as 6 limbs of 24 bits),
echoed as outputs, so a proof made for one round of one market verifies nowhere else.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedmarket.zk.fixed_point import STEP


def krum_neighbours(n: int) -> int:
    """n - f - 2 with f = (n - 1) // 2, at least 1 and at most n - 1 (tasks/outliers/krum.py)."""
    return min(max(n - (n - 1) // 2 - 2, 1), max(n - 1, 0))


def root_slack(dim: int) -> float:
    """How far the circuit's y may sit from the exact one: d / 2 steps, the bound if each of the
    d squared differences is rounded onto the grid before the sum (measured: up to 16 steps off
    at d = 650, where a one-step check failed), plus one for the root's own square. A prover may thus shift a root by at most
    slack / (2 s), about 0.006 at d = 650 and distances of order 100: that is the bound within
    which the proven rule may differ from the exact one, and the float mask is checked equal."""
    return (dim / 2 + 1) * STEP


def grid_sqrt(y: np.ndarray) -> np.ndarray:
    """The roots the prover supplies: the largest grid value s with s^2 <= y."""
    return np.floor(np.sqrt(np.maximum(np.asarray(y, dtype=np.float64), 0.0)) / STEP) * STEP


def _rank(values: torch.Tensor, among: torch.Tensor, lower_index: torch.Tensor) -> torch.Tensor:
    """rank[..., j] = #{l in `among`: values[..., l] < values[..., j], ties to the lower l}."""
    v_l, v_j = values.unsqueeze(-1), values.unsqueeze(-2)  # [..., l, 1], [..., 1, j]
    # no Equal: EZKL 23 gives Equal's 0/1 the input's scale (1 reads as 2^-8); <= and < are exact
    dtype = values.dtype
    before = lower_index * (v_l <= v_j).to(dtype) + (1.0 - lower_index) * (v_l < v_j).to(dtype)
    return (before * among.unsqueeze(-1)).sum(dim=-2)


class RoundCircuit(nn.Module):
    """forward(*models, start, aggregate, roots, public) -> (flags, domain, mask, valid)

    models: L tensors [1, d]; start, aggregate: [1, d]; roots: [1, L]; public: [1, 1 + L + DOMAIN_LIMBS] =
    [first, present_1..L, domain limbs]. Outputs: flags = [first, present] and mask and valid
    as 0/1 (scale 0), the domain limbs echoed (24-bit integers at scale 8: a limb x enters as
    x / 2^8), so the public tensor is pinned by the outputs and its hash needs no check.
    """

    def __init__(self, trainers: int, dim: int):
        super().__init__()
        self.trainers, self.dim = trainers, dim
        L = trainers
        idx = torch.arange(L)
        self.register_buffer("not_self", (idx[:, None] != idx[None, :]).double())
        self.register_buffer("lower_index", (idx[:, None] < idx[None, :]).double())  # [l, j]: l < j
        self.register_buffer("counts", torch.arange(1, L + 1).double()[None, :])
        self.register_buffer("k_of_n", torch.tensor([[float(krum_neighbours(n)) for n in range(1, L + 1)]]))
        self.register_buffer("m_of_n", torch.tensor([[float(max(1, n // 2)) for n in range(1, L + 1)]]))

    def squared_distances(self, *inputs: torch.Tensor) -> torch.Tensor:
        """y_i = ||W_i - reference||^2 ([1, L]), from the same inputs as forward (roots unused):
        the prover's roots are grid_sqrt(y)."""
        return self._distances(*inputs)[0]

    def forward(self, *inputs: torch.Tensor):
        y, W, flags, present, n = self._distances(*inputs)
        aggregate, roots = inputs[self.trainers + 1], inputs[self.trainers + 2]
        dtype = y.dtype

        # the prover's square roots, checked within the circuit's rounding of y on each side
        s = roots * present
        slack = root_slack(self.dim)
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
        domain = inputs[-1][:, self.trainers + 1 :]
        return flags, domain, mask, valid

    def _distances(self, *inputs: torch.Tensor):
        L = self.trainers
        models, (start, _aggregate, _roots, public) = inputs[:L], inputs[L:]
        dtype = start.dtype
        flags = (public[:, : L + 1] > 0.5).to(dtype)  # [1, 1 + L]
        first, present = flags[:, :1], flags[:, 1:]
        W = torch.cat(models, dim=0) * present.T  # [L, d]; absent slots count nowhere
        n = present.sum(dim=1, keepdim=True)  # [1, 1]: EZKL wants no 0-d tensors

        # round 1 reference: m-Krum over the present slots
        sq = (W * W).sum(dim=1, keepdim=True)  # [L, 1]
        D = sq + sq.T - 2.0 * (W @ W.T)  # [L, L] squared distances
        counts = self.counts.to(dtype)
        onehot = (n > counts - 0.5).to(dtype) * (n < counts + 0.5).to(dtype)  # n one-hot over 1..L
        k = (onehot * self.k_of_n.to(dtype)).sum(dim=1, keepdim=True)
        m = (onehot * self.m_of_n.to(dtype)).sum(dim=1, keepdim=True)
        pair = present.T * present * self.not_self.to(dtype)  # [i, j]: both present, i != j
        neighbour_rank = _rank(D, pair, self.lower_index.to(dtype))  # [i, j] within row i
        nearest = pair * (neighbour_rank < k).to(dtype)
        score = (nearest * D).sum(dim=1, keepdim=True).T  # [1, L]
        score_rank = _rank(score, present, self.lower_index.to(dtype))
        selected = present * (score_rank < m).to(dtype)  # [1, L]
        krum_sum = selected @ W  # [1, d]

        # m W_i - sum(selected) with m = |selected| counted from the 0/1 selection, and the choice
        # between references as one product with the 0/1 flag: every factor here is a scale-0
        # value, so EZKL needs no rescaling over the L x d entries (19 % fewer rows at L = 8, d = 650)
        later = W - start
        diff = later + first * (selected.sum(dim=1, keepdim=True) * W - krum_sum - later)
        y = ((diff * diff).sum(dim=1, keepdim=True) * present.T).T  # [1, L]
        return y, W, flags, present, n
