"""The settlement statement as a torch module (logistic regression tasks), exported to ONNX for
EZKL and run in float64 as the same computation.

Statement (sources/004, section III.A eq. (2) and section IV.C, "ZKPs for contribution
assessment": accuracy of a secret model on a committed data set, repeated for the RLOO coalitions):
for the final round's L slots W_i (hashed: the commitments on chain), the final model (hashed:
the market's model commitment), the test chunk (hashed: one chunk of the owner's committed data,
features and one-hot labels on the 2^-8 grid) and the public RLOO subsets S (row i: the subset
drawn for benign trainer i, containing i; zero for others),
- correct(m) = #{test samples whose true class's logit is strictly above every other class's},
- outputs: correct(final model), and C_i = correct(sum of S_i's models) - correct(sum of
  S_i \\ {i}'s models) for every slot (0 outside the benign set).

Departures from sources/004, each for the circuit's sake:
- contributions are measured on the final round's models only (the paper sums RLOO over rounds):
  proving every round's coalitions at settlement would multiply the circuit by T;
- a coalition's model is the *sum* of its members' models, not their average: for logistic
  regression the logits scale by |S| and the predicted class does not change, so no division by a
  variable count is needed (this is why only LR is supported: an MLP is not homogeneous);
- C_i is a difference of correct counts on the test chunk, not of accuracies, and it is not
  normalised: the contract pays by C_i^+ / sum_j C_j^+, which is invariant to the scale;
- a tie between the true class and another counts as wrong (torch's argmax would pick the lower
  index); the empty coalition has all-zero logits and so counts nothing correct.
"""

from __future__ import annotations

import torch
from torch import nn



class SettlementCircuit(nn.Module):
    """forward(*models, final, test, public) -> (correct, contributions, subsets, domain)

    models: L tensors [1, d], d = c (f + 1) in torch's Linear order (weight rows, then bias);
    final: [1, d]; test: [n, f + c] (features, then the one-hot label); public: [1, L * L + DOMAIN_LIMBS]
    (the subset matrix row by row as 0/1, then the domain limbs)."""

    def __init__(self, trainers: int, features: int, classes: int, samples: int):
        super().__init__()
        self.trainers, self.features, self.classes, self.samples = trainers, features, classes, samples
        self.register_buffer("not_self", 1.0 - torch.eye(trainers, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return self.classes * (self.features + 1)

    def forward(self, *inputs: torch.Tensor):
        L, f, c = self.trainers, self.features, self.classes
        models, (final, test, public) = inputs[:L], inputs[L:]
        dtype = final.dtype
        W = torch.cat(models, dim=0)  # [L, d]
        subsets = (public[:, : L * L] > 0.5).to(dtype).reshape(L, L)  # [i, j]: j in S_i
        with_i = subsets @ W  # [L, d]: sum of S_i's models
        without_i = (subsets * self.not_self.to(dtype)) @ W  # sum of S_i \ {i}
        coalitions = torch.cat([final, with_i, without_i], dim=0)  # [1 + 2L, d]
        correct = self.correct_counts(coalitions, test)  # [1, 1 + 2L]
        contributions = correct[:, 1 : 1 + L] - correct[:, 1 + L :]
        domain = public[:, L * L :]
        return correct[:, :1], contributions, subsets.reshape(1, L * L), domain

    def correct_counts(self, coalitions: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        """[1, m]: test samples each of the m models classifies correctly (strict maximum)."""
        f, c = self.features, self.classes
        m = coalitions.shape[0]
        weights = coalitions[:, : c * f].reshape(m * c, f)  # row (model, class)
        bias = coalitions[:, c * f :].reshape(1, m * c)
        x, y = test[:, :f], test[:, f:]  # [n, f], [n, c]
        logits = (x @ weights.T + bias).reshape(-1, m, c)  # [n, m, c]
        true = (logits * y.unsqueeze(1)).sum(dim=2, keepdim=True)  # [n, m, 1]
        rivals = ((logits >= true).to(logits.dtype) * (1.0 - y.unsqueeze(1))).sum(dim=2)  # [n, m]
        return (rivals < 0.5).to(logits.dtype).sum(dim=0, keepdim=True)  # [1, m]
