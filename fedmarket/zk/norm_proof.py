"""The norm-bound statement of a secure-aggregation market: a trainer proves that the model behind
its commitment moved at most the task's bound from the round's global model, without showing it.

The norm-bound defence of RoFL (Burkhalter et al., "RoFL: Robustness of Secure Federated
Learning", IEEE S&P 2023) and ELSA (Rathee et al., IEEE S&P 2023): under secure aggregation no
one sees an update, so no outlier rule can judge it, but a bound on each update's L2 norm, proven
by its trainer, caps what any one of them can move the mean. The circuit (`NormBound`):

- inputs, each under a KZG commitment the proof carries (EZKL's `polycommit` visibility,
  fedmarket/zk/ezkl/polycommit.py): the trainer's model W (SHA-256 of its commitment point is
  the commitment it submits on chain), the round's global model and the domain limbs of (chain,
  market, round, trainer), whose commitments the verifier computes from their public values;
- outputs: ||W - start||^2, exact at scale 16 (no product is rounded), and the domain limbs
  echoed, so a proof made for one trainer, round or market is accepted nowhere else.

The verifier (the aggregator, and `fedmarket audit` after it) checks the proof with the build's
verifying key, each commitment and output against what it knows, and the norm against the bound.
Once the round's sum S of the survivors' models is rebuilt, the commitments close the gap between
what was proven and what was masked: KZG commitments add up (C(a) + C(b) = C(a + b) + C(0) as
EZKL lays inputs out), so sum_u C(W_u) = C(S) + (n - 1) C(0) holds exactly when the masked models
add up to the proven ones (`sum_is_proven`). Such a market masks in BN254's field
(fedmarket/secagg/masks.py), where one trainer's masked model y also satisfies C(y) - C(0) =
(C(W) - C(0)) + sum s (C(r) - C(0)) over its masks r (`polycommit.combines_to`): checked per
trainer from commitments to its masks (`exclusions.masked_cheaters`).

Departures: RoFL proves the bound on the very vector that is aggregated, through Pedersen
commitments homomorphic with its masking, so a cheating client is named; ELSA splits the check
across two servers. Here the sum check voids the round (it counts nobody and keeps the global
model, so no poisoned mean reaches the chain), then each survivor is checked on its own and a
cheater is named (a pair disputing its mask's commitment is settled by a point reveal) and
excluded from every later round; it can still void the one round it is named in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedmarket.errors import ZKError
from fedmarket.field import signed, to_bytes32
from fedmarket.fixed_point import STEP, domain_limbs, on_grid, quantize
from fedmarket.settings import Settings, load_settings
from fedmarket.zk.ezkl.polycommit import combines_to, commit_values, proof_commitments
from fedmarket.zk.ezkl.poseidon import felt_to_int
from fedmarket.zk.ezkl.prover import Proof, prove, verify_file
from fedmarket.zk.ezkl.toolchain import CircuitBuild, RunArgs, build_circuit


class NormBound(nn.Module):
    """forward(model [1, d], start [1, d], domain [1, 6]) -> (||model - start||^2 [1, 1], domain)."""

    def forward(self, model: torch.Tensor, start: torch.Tensor, domain: torch.Tensor):
        update = model - start
        return (update * update).sum(dim=1, keepdim=True), domain


def norm_domain(chain_id: int, market: str, round: int, trainer: str) -> int:
    """What a trainer's norm proof is bound to: its chain, market, round and address."""
    text = f"fedmarket/norm-bound/v1/{chain_id}/{market.lower()}/{round}/{trainer.lower()}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def clip_to_bound(model: np.ndarray, start: np.ndarray, bound: float) -> np.ndarray:
    """The model on the grid, its update from `start` scaled down, if need be, to a norm within
    `bound` after rounding (as RoFL's clients clip theirs), so that its proof holds."""
    model, start = quantize(model), np.asarray(start, dtype=np.float64)
    norm = float(np.linalg.norm(model - start))
    if norm <= bound:
        return model
    target = max(bound - np.sqrt(model.size) * STEP / 2, 0.0)  # rounding moves it at most this much
    return quantize(start + (model - start) * (target / norm))


def build_norm_circuit(dim: int, settings: Settings | None = None) -> CircuitBuild:
    """The norm-bound circuit for `dim` parameters, from the build cache (`FEDMARKET_ZK_CACHE_DIR`)
    and SRS (`FEDMARKET_ZK_SRS_PATH`, else gen_srs). Products stay at scale 16, unrounded."""
    settings = settings or load_settings()
    example = [torch.zeros(1, dim, dtype=torch.float64)] * 2 + [torch.zeros(1, 6, dtype=torch.float64)]
    return build_circuit(
        f"norm-d{dim}",
        NormBound().double(),
        example,
        settings.zk_cache_dir,
        srs_path=settings.zk_srs_path,
        run_args=RunArgs(num_inner_cols=settings.zk_columns, scale_rebase_multiplier=2, input_visibility="polycommit"),
    )


def point_commitment(point: bytes) -> str:
    """The on-chain commitment to a KZG point: SHA-256 of its 64 bytes, in the field (as every
    SHA-256 commitment of fedmarket.commitments)."""
    return to_bytes32(int.from_bytes(hashlib.sha256(point).digest(), "big"))


@dataclass(frozen=True)
class NormProof:
    """A trainer's proof, as EZKL's proof file, with what it claims."""

    proof_json: str
    point: bytes  # the KZG commitment to the model the proof carries
    norm: float  # ||model - start||, as the circuit computed it
    prove_s: float

    @property
    def commitment(self) -> str:
        """What the trainer submits on chain."""
        return point_commitment(self.point)

    @property
    def size(self) -> int:
        return len(self.proof_json.encode())


def prove_norm(build: CircuitBuild, model: np.ndarray, start: np.ndarray, domain: int) -> NormProof:
    """Prove ||model - start|| for `domain` (both models on the 2^-8 grid)."""
    proof: Proof = prove(build, [model[None, :], start[None, :], domain_limbs(domain)[None, :]])
    norm = float(np.sqrt(_norm_sq(build, proof.instances)))
    (point,) = proof_commitments(proof.proof_json, 1)
    return NormProof(proof.proof_json, point, norm, proof.prove_s)


def _norm_sq(build: CircuitBuild, instances: list[int]) -> float:
    scale = int(build.settings()["model_output_scales"][0])
    return signed(instances[0]) / 2.0**scale


def verify_norm(
    build: CircuitBuild, proof_json: str, *, commitment: str, start: np.ndarray, domain: int, bound: float
) -> float:
    """The norm the proof shows, once the proof verifies for this commitment, start model and
    domain and the norm is within `bound`; ZKError naming what fails otherwise."""
    try:
        instances = [felt_to_int(f) for f in json.loads(proof_json)["instances"][0]]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ZKError(f"the norm proof is not an EZKL proof file: {exc}") from None
    if len(instances) != 1 + 6:  # the norm, six domain limbs
        raise ZKError(f"the norm proof has {len(instances)} public instances, the circuit 7")
    if not on_grid(start):
        raise ZKError("the round's global model is not on the 2^-8 grid")
    model_point, start_point, domain_point = proof_commitments(proof_json, 3)
    if point_commitment(model_point) != commitment:
        raise ZKError(f"the norm proof is for commitment {point_commitment(model_point)}, not {commitment}")
    if start_point != commit_values(build, start):
        raise ZKError("the norm proof is from another global model than the round's")
    limbs = domain_limbs(domain)
    if [int(round(x * 256)) for x in limbs] != instances[1:] or domain_point != commit_values(build, limbs):
        raise ZKError("the norm proof is for another chain, market, round or trainer")
    if not verify_file(build, proof_json):
        raise ZKError("the norm proof does not verify")
    norm = float(np.sqrt(max(_norm_sq(build, instances), 0.0)))
    if norm > bound:
        raise ZKError(f"the proven update norm {norm:.4f} exceeds the task's bound {bound:g}")
    return norm


def sum_is_proven(build: CircuitBuild, proofs: list[str], total: np.ndarray) -> bool:
    """Whether `total` (the rebuilt sum of the survivors' models, integers at scale 8) is the sum
    of the models these verified proofs commit to."""
    points = [proof_commitments(p, 1)[0] for p in proofs]
    values = np.asarray(total, dtype=np.float64) * STEP
    zero = commit_values(build, np.zeros_like(values))
    return combines_to(commit_values(build, values), [(1, p) for p in points], zero)
