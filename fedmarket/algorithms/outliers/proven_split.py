"""The proven rule (proven.py) split for rounds past one proof's memory: the parameters in P
chunks, one `GramChunk` proof per chunk and one `ChunkedRoundRule` proof of the rule over them.

The rule reads the models only through their Gram matrix and the aggregate check, both sums over
the parameters, so a chunk of parameters carries its share of each: chunk c proves, over its
slice of every model, of the start model and of the aggregate,
- G_c: the (L + 1)(L + 2) / 2 distinct entries of the Gram matrix of [u_1..u_L, start] on the
  chunk, each rescaled onto the grid as the whole circuit rescales it;
- the mask it was given, echoed, and short_c, 0 where k agg = the sum of the k kept models
  on the chunk within k / 2 steps an entry (and, packed, every element unpacks); positive where not.
Its outputs are hashed: one Poseidon hash, the instance the rule proof takes as the hash of its
input c, so the contract links the proofs by comparing instances. The rule proof sums the G_c into
the Gram matrix, runs the rule on it as proven.py does, and counts into `valid` every short_c and
every slot where a chunk's mask differs from its own: a chunk proven under another mask, or whose
aggregate is not the mean of that mask, fails the round.

Departures from the one-proof rule: each Gram entry is rounded once per chunk, so it may sit
P / 2 steps from the exact one where one proof's sits half a step (the roots' slacks grow with it,
proven.entry_error), and the prover's grid run rounds per chunk as well (ProvenRoundRule(chunks)).
sources/004 proves the round in one circuit; splitting is for the circuit's memory alone.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmarket.algorithms.outliers.proven import (
    ProvenRoundRule,
    aggregate_shortfall,
    gather_gram,
    gram_products,
)
from fedmarket.packing import always_one, packed_size, unpack_pairs


def gram_entries(trainers: int) -> int:
    """Distinct entries of the Gram matrix of L updates and the start model."""
    return (trainers + 1) * (trainers + 2) // 2


def chunk_outputs(trainers: int) -> int:
    """Values a chunk proof outputs (and hashes): its Gram entries, the mask, its shortfall."""
    return gram_entries(trainers) + trainers + 1


class GramChunk(nn.Module):
    """forward(*models, start, aggregate, mask) -> [1, chunk_outputs(L)]: one chunk's share.

    models: L tensors [1, size] (zeros for an absent slot: the rule masks it); start, aggregate:
    [1, size], or [1, size / 2] two values per element when `packed`; mask: [1, L], the rule's
    benign mask as 0/1. Outputs G_c, the mask as given and short_c, in that order."""

    def __init__(self, trainers: int, size: int, packed: bool = False):
        super().__init__()
        if packed and size % 2:
            raise ValueError(f"a packed chunk holds whole pairs: {size} parameters is odd")
        self.trainers, self.size, self.packed = trainers, size, packed
        idx = torch.arange(trainers + 1)
        self.register_buffer("widen", torch.eye(trainers, trainers + 1).double())
        self.register_buffer("start_slot", (idx == trainers).double()[None, :])

    @property
    def model_width(self) -> int:
        """Elements of the start model's and the aggregate's inputs."""
        return packed_size(self.size) if self.packed else self.size

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        L = self.trainers
        models, start, aggregate, mask = inputs[:L], inputs[L], inputs[L + 1], inputs[L + 2]
        dtype = mask.dtype
        benign = (mask > 0.5).to(dtype)
        shorts = []
        if self.packed:
            one = always_one(mask[:, :1])
            start, start_short = unpack_pairs(start, self.size, one)
            aggregate, aggregate_short = unpack_pairs(aggregate, self.size, one)
            shorts = [start_short.sum(dim=1, keepdim=True), aggregate_short.sum(dim=1, keepdim=True)]
        products = gram_products([m - start for m in models] + [start])  # EZKL rescales each onto the grid
        W = torch.cat([*models, start], dim=1).reshape(L + 1, self.size)
        short = aggregate_shortfall(benign, W, aggregate, self.widen, self.start_slot)
        for more in shorts:  # packed: and every element unpacks
            short = short + more
        # the mask as given, at the input scale like the rest: the rule requires it to be its own
        # 0/1 mask exactly, so this chunk's `benign` is that mask
        return torch.cat([products, mask, short], dim=1)


class ChunkedRoundRule(ProvenRoundRule):
    """forward(*parts, hints) -> (flags, domain, mask, valid), as ProvenRoundRule's.

    parts: P tensors [1, chunk_outputs(L)], the chunk proofs' outputs; hints as ProvenRoundRule's.
    The Gram matrix is the sum of the parts' entries; `valid` also requires every part's shortfall
    to be 0 and its mask to be this proof's."""

    def __init__(self, trainers: int, dim: int, chunks: int):
        super().__init__(trainers, dim, packed=False, mode="circuit", chunks=chunks)

    def _start(self, inputs, public):
        return None, None  # the chunks read the start model

    def _gram(self, inputs, start):
        G, parts = gram_entries(self.trainers), inputs[:-1]
        products = parts[0][:, :G]
        for part in parts[1:]:
            products = products + part[:, :G]
        return gather_gram(products, self.gram_index), None

    def _aggregate(self, inputs, public):
        return inputs[:-1]

    def _aggregate_short(self, parts, W, benign: torch.Tensor) -> torch.Tensor:
        G, L = gram_entries(self.trainers), self.trainers
        shorts = [part[:, G + L :] + (part[:, G : G + L] - benign).abs().sum(dim=1, keepdim=True) for part in parts]
        short = shorts[0]
        for more in shorts[1:]:
            short = short + more
        return short
