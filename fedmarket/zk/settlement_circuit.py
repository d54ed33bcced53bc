"""The settlement statement as a torch module (logistic regression and one-hidden-layer ReLU MLP
tasks), exported to ONNX for EZKL and run in float64 as the same computation.

Statement, one per round r (sources/004, section III.A eq. (2) and section IV.C, "ZKPs for
contribution assessment": accuracy of a secret model on a committed data set, repeated for the
RLOO coalitions): for round r's L slots W_i (hashed: the commitments on chain), the final model
(hashed two values per element: the market's model commitment), round r's test chunk (hashed:
one chunk of the owner's committed data, features and one-hot labels on the 2^-8 grid) and the
public RLOO subsets S (row i: the subset drawn for trainer i, benign in round r, containing i;
zero for others),
- correct(m) = #{test samples whose true class's logit is strictly above every other class's},
- outputs: correct(final model), and C_i = correct(avg of S_i's models) - correct(avg of
  S_i \\ {i}'s models) for every slot (0 outside the benign set).

The coalition average is never divided out: a coalition of k members predicts as its average does
from logits that are the average's times a positive constant, so the predicted class is the same.
- LR: the sum of the members' models, whose logits are k times the average's.
- MLP (Linear, ReLU, Linear): with Z = sum(W1) x + sum(b1) = k (the average's pre-activation) and
  ReLU positively homogeneous, sum(W2) relu(Z) + k sum(b2) is k^2 times the average's logits.

The contract sums C_i over every round, as the paper does, and averages the final model's
accuracy over the rounds' chunks (of equal size: the accuracy on all of them, each chunk's
floored to basis points).

Departures from sources/004, each for the circuit's sake:
- each round is scored on its own test chunk of `samples` rows, not on the whole test set: a
  proof's memory grows with its rows, and T proofs of n rows fit this machine where one of T n
  rows does not (the T chunks together are the test set), and a chunk past one proof's memory
  is proven in parts of equal rows whose counts the contract adds (settlement_proof.py);
- C_i is a difference of correct counts on the test chunk, not of accuracies, and it is not
  normalised: the contract pays by C_i^+ / sum_j C_j^+, which is invariant to the scale;
- a tie between the true class and another counts as wrong (torch's argmax would pick the lower
  index); the empty coalition has all-zero logits and so counts nothing correct.

Layout for the circuit's sake (exact in every step, so the proven counts equal the float ones):
- whatever is linear in the model is computed once per slot model and combined per coalition
  with the 0/1 subset matrix: the LR logits (8 products per sample at L = 8 where combining
  weights first needs 16), the MLP's pre-activations; only the MLP's ReLU and second layer run
  per coalition. The final model is scored on its own: it arrives packed, and unpacked it sits
  at the rebase scale (fedmarket/packing.py), so its products are rescaled (exactly: its
  values are multiples of 2^-8);
- LR: each model's true-class logit is subtracted before the combination, so a coalition's rivals
  are the classes whose margin is >= 0, the true class itself included (its margin is exactly 0):
  correct means exactly one such class, and no product with the labels is taken per coalition;
- the circuit is built with integral constants at scale 0 and no product rescaled
  (settlement_proof.build_settlement_circuit: `scale_rebase_multiplier` 2 for LR, whose products
  x W stay at scale 16; 3 for the MLP, whose second-layer products are at scale 24), so nothing
  is rounded: the final model's rescales divide out factors its grid values carry.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmarket.fixed_point import FRAC_BITS, STEP
from fedmarket.packing import always_one, unpack_pairs


class SettlementCircuit(nn.Module):
    """forward(*models, final, test, public) -> (correct, contributions, subsets, domain, unpacked)

    models: L tensors [1, d] in torch's parameter order (LR: weight rows, then bias; MLP with
    `hidden` units: first weight rows, first bias, second weight rows, second bias); final:
    [1, ceil(d / 2)], the final model packed two values per element as the round circuit hashes
    a global model (fedmarket/packing.py); test: [n, f + c] (features, then the one-hot label);
    public: [1, L * L + DOMAIN_LIMBS] (the subset matrix row by row as 0/1, then the domain
    limbs). `hidden` None: logistic regression. unpacked: 1 when every packed element unpacks."""

    def __init__(self, trainers: int, features: int, classes: int, samples: int, hidden: int | None = None):
        super().__init__()
        self.trainers, self.features, self.classes, self.samples, self.hidden = (
            trainers,
            features,
            classes,
            samples,
            hidden,
        )
        self.register_buffer("not_self", 1.0 - torch.eye(trainers, dtype=torch.float64))
        self.register_buffer("alone", torch.ones(1, 1, dtype=torch.float64))  # one model, one coalition

    @property
    def scale_rebase_multiplier(self) -> int:
        """EZKL's, chosen so that no product is rescaled: LR's x W stay at scale 16, the MLP's
        second-layer products at 24."""
        return 2 if self.hidden is None else 3

    @property
    def dim(self) -> int:
        f, c, h = self.features, self.classes, self.hidden
        return c * (f + 1) if h is None else h * (f + 1) + c * (h + 1)

    def forward(self, *inputs: torch.Tensor):
        L = self.trainers
        models, (packed, test, public) = inputs[:L], inputs[L:]
        dtype = packed.dtype
        final, short = unpack_pairs(
            packed, self.dim, always_one(public[:, :1]), FRAC_BITS * self.scale_rebase_multiplier
        )
        unpacked = (short.sum(dim=1, keepdim=True) < STEP).to(dtype)
        subsets = (public[:, : L * L] > 0.5).to(dtype).reshape(L, L)  # [i, j]: j in S_i
        # coalition k as 0/1 weights over W_1..W_L: each S_i, then each S_i \ {i}
        members = torch.cat([subsets, subsets * self.not_self.to(dtype)], dim=0)  # [2L, L]
        counts = self.correct_counts(torch.cat(models, dim=0), members, test)  # [1, 2L]
        # the final model on its own: unpacked, it sits at the rebase scale, and combined with the
        # slots it would lift every slot's products past it (a rescale each)
        correct = self.correct_counts(final, self.alone.to(dtype), test)  # [1, 1]
        contributions = counts[:, :L] - counts[:, L:]
        domain = public[:, L * L :]
        return correct, contributions, subsets.reshape(1, L * L), domain, unpacked

    def correct_counts(self, models: torch.Tensor, members: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        """[1, K]: test samples each coalition (the average of its members' models, `members` [K, M]
        over `models` [M, d]) classifies correctly (strict maximum)."""
        f = self.features
        x, y = test[:, :f], (test[:, f:] > 0.5).to(test.dtype)  # [n, f], [n, c] (labels as 0/1 at scale 0)
        margins = (
            self._lr_margins(models, members, x, y) if self.hidden is None else self._mlp_margins(models, members, x, y)
        )
        rivals = (margins >= 0.0).to(x.dtype).sum(dim=1)  # [n, K], the true class included
        return (rivals < 1.5).to(x.dtype).sum(dim=0, keepdim=True)  # [1, K]

    def _lr_margins(self, models, members, x, y) -> torch.Tensor:
        """[n, c, K]: each class's logit minus the true one's, for the sum of each coalition."""
        f, c = self.features, self.classes
        count = models.shape[0]
        weights = models[:, : c * f].reshape(count * c, f)  # row (model, class)
        bias = models[:, c * f :].reshape(1, count * c)
        logits = (x @ weights.T + bias).reshape(-1, count, c).transpose(1, 2)  # [n, c, M]
        true = (logits * y.unsqueeze(2)).sum(dim=1, keepdim=True)  # [n, 1, M]
        return (logits - true) @ members.T

    def _mlp_margins(self, models, members, x, y) -> torch.Tensor:
        """[n, c, K]: as _lr_margins, from sum(W2) relu(Z) + k sum(b2) per coalition."""
        f, c, h = self.features, self.classes, self.hidden
        count = models.shape[0]
        w1 = models[:, : h * f].reshape(count * h, f)  # row (model, unit)
        b1 = models[:, h * f : h * (f + 1)].reshape(1, count * h)
        w2 = members @ models[:, h * (f + 1) : h * (f + 1) + c * h]  # [K, c h]: each coalition's sum
        b2 = members @ models[:, h * (f + 1) + c * h :]  # [K, c]
        size = members.sum(dim=1, keepdim=True)  # [K, 1]: k
        pre = (x @ w1.T + b1).reshape(-1, count, h).transpose(1, 2)  # [n, h, M]: once per model
        z = (pre @ members.T).permute(2, 0, 1)  # [K, n, h]: each coalition's sum
        hidden = z * (z > 0.0).to(z.dtype)  # ReLU as a product with a 0/1 comparison
        logits = (hidden @ w2.reshape(-1, c, h).transpose(1, 2) + (size * b2).unsqueeze(1)).permute(
            1, 2, 0
        )  # [n, c, K]
        true = (logits * y.unsqueeze(2)).sum(dim=1, keepdim=True)  # [n, 1, K]
        return logits - true
