"""The settlement statement in float and as a proof (fedmarket/zk/settlement_circuit.py), and the
two things it is bound to besides the models: the owner's test chunks and the RLOO subsets.
A proven settlement is one such proof per round (DataMarket.proveContributions), summed on chain.

- **Test chunks.** In a market whose settlement is proven, the owner's data is cut into K chunks
  of `samples` rows (the remainder only ever validates); the owner commits at creation to
  `keccak256(abi.encode(uint256[] chunkHashes)) mod FIELD`, each chunk hash being EZKL's Poseidon
  hash of the chunk on the 2^-8 grid (features / 16 and one-hot labels). Round r scores chunk
  `(splitSeed + r - 1) mod K`, from the seed the trainers' commit-reveal fixes; the T rounds'
  chunks are the test set (distinct: K > T is checked at creation), every other row validates.
  The settlement adapter (contracts/src/EzklSettlementVerifier.sol) checks both hashes and the index.
- **RLOO subsets** (sources/004 section III.A): for each benign trainer i of round r, i plus
  `size - 1` other benign trainers, `size = min(N, max(2, ceil(log2 N)))` as
  fedmarket/algorithms/contribution/rloo.py, drawn without replacement by
  `keccak256(abi.encode(seed, i, k)) mod remaining` with the round's seed
  `keccak256(abi.encode(rlooSeed, r)) mod FIELD`; the adapter derives the same matrix in Solidity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from eth_abi import encode
from eth_utils import keccak

from fedmarket.errors import ProofMismatchError, ZKError
from fedmarket.field import BN254_FIELD, list_commitment
from fedmarket.fixed_point import domain_limbs, on_grid
from fedmarket.ml.data import Dataset, scale_inputs
from fedmarket.ml.models import parameter_count
from fedmarket.packing import pack_pairs
from fedmarket.settings import Settings, load_settings
from fedmarket.zk.ezkl.poseidon import poseidon_commitment
from fedmarket.zk.ezkl.prover import Proof, prove
from fedmarket.zk.ezkl.toolchain import CircuitBuild, CircuitSpec, RunArgs
from fedmarket.zk.ezkl.verifier import market_proof
from fedmarket.zk.settlement_circuit import SettlementCircuit
from fedmarket_schemas.market import ModelConfig, ModelKind


def chunk_rows(data: Dataset, model: ModelConfig) -> np.ndarray:
    """[rows, f + c]: scaled features (digits: k / 16, on the grid) and one-hot labels."""
    onehot = np.eye(model.classes)[np.asarray(data.labels)]
    rows = np.concatenate([scale_inputs(data.features, model).astype(np.float64), onehot], axis=1)
    if not on_grid(rows):
        raise ZKError("a proven settlement needs the owner's scaled features on the 2^-8 grid; this data is not")
    return rows


def chunk_count(data: Dataset, samples: int, rounds: int = 1) -> int:
    """K: the owner's rows in chunks of `samples`; one test chunk per round and one to validate."""
    count = len(data) // samples
    if count < rounds + 1:
        raise ZKError(
            f"{len(data)} owner rows make {count} test chunks of {samples}; a proven settlement of "
            f"{rounds} rounds scores one chunk per round and validates on another, so it needs {rounds + 1}"
        )
    return count


@dataclass(frozen=True)
class DataChunks:
    hashes: list[int]
    commitment: str  # the market's data commitment, bytes32 hex

    @classmethod
    def of(cls, data: Dataset, samples: int, model: ModelConfig, rounds: int = 1) -> DataChunks:
        rows = chunk_rows(data, model)
        hashes = [
            int(poseidon_commitment(rows[k * samples : (k + 1) * samples]), 16)
            for k in range(chunk_count(data, samples, rounds))
        ]
        return cls(hashes, list_commitment(hashes))


def test_chunk_index(split_seed: bytes, chunks: int, round: int) -> int:
    """The chunk round `round` (1-based) scores: consecutive from the split seed's."""
    return (int.from_bytes(split_seed, "big") % chunks + round - 1) % chunks


def _chunk(data: Dataset, samples: int, index: int) -> np.ndarray:
    return np.arange(index * samples, (index + 1) * samples)


def round_test_chunk(data: Dataset, samples: int, split_seed: bytes, round: int, rounds: int) -> Dataset:
    """The rows round `round`'s contributions are scored on."""
    return data.subset(_chunk(data, samples, test_chunk_index(split_seed, chunk_count(data, samples, rounds), round)))


def split_by_chunks(data: Dataset, samples: int, split_seed: bytes, rounds: int) -> tuple[Dataset, Dataset]:
    """(validation, test): the rounds' test chunks in round order, and every other row."""
    count = chunk_count(data, samples, rounds)
    test = np.concatenate([_chunk(data, samples, test_chunk_index(split_seed, count, r)) for r in range(1, rounds + 1)])
    return data.subset(np.setdiff1d(np.arange(len(data)), test)), data.subset(test)


def round_rloo_seed(rloo_seed: bytes, round: int) -> int:
    """The seed of round `round`'s RLOO subsets (DataMarket.contributionInstances)."""
    return int.from_bytes(keccak(encode(["bytes32", "uint256"], [rloo_seed, round])), "big") % BN254_FIELD


def rloo_subsets(seed: int, mask: int, trainers: int) -> np.ndarray:
    """[L, L] 0/1: row i is benign trainer i's subset (contracts/src/EzklSettlementVerifier.sol)."""
    benign = [j for j in range(trainers) if mask >> j & 1]
    n = len(benign)
    size = min(n, max(2, (n - 1).bit_length())) if n > 1 else 1
    subsets = np.zeros((trainers, trainers))
    for i in benign:
        subsets[i, i] = 1
        others = [j for j in benign if j != i]
        for r in range(size - 1):
            k = int.from_bytes(keccak(encode(["uint256", "uint256", "uint256"], [seed, i, r])), "big") % len(others)
            subsets[i, others[k]] = 1
            others[k] = others[-1]
            others.pop()
    return subsets


@dataclass(frozen=True)
class SettlementStatement:
    models: list[np.ndarray | None]  # one round's slots, on the grid
    final: np.ndarray
    test: np.ndarray  # chunk_rows of the test chunk
    subsets: np.ndarray
    domain: int
    model: ModelConfig

    @property
    def trainers(self) -> int:
        return len(self.models)

    def circuit(self) -> SettlementCircuit:
        return settlement_circuit(self.trainers, self.model, len(self.test))

    def inputs(self) -> list[np.ndarray]:
        d = parameter_count(self.model)
        slots = [np.zeros((1, d)) if m is None else np.asarray(m, dtype=np.float64).reshape(1, d) for m in self.models]
        public = np.concatenate([self.subsets.ravel(), domain_limbs(self.domain)]).reshape(1, -1)
        return [
            *slots,
            pack_pairs(self.final).reshape(1, -1),
            np.asarray(self.test, dtype=np.float64),
            public,
        ]


@dataclass(frozen=True)
class SettlementProof:
    proof: Proof
    correct: int
    samples: int
    contributions: list[int]
    float_correct: int
    present: list[bool]

    @property
    def accuracy_bps(self) -> int:
        return self.correct * 10_000 // self.samples

    def calldata(self, split_seed: bytes, chunks: DataChunks) -> bytes:
        """The `proof` argument of `proveContributions` (contracts/src/EzklSettlementVerifier.sol): the Halo2
        proof and [correct, splitSeed, h(public), K, chunk hashes..., hashes of absent slots...]."""
        hashes, slots = self.proof.input_hashes, len(self.present)
        free = [self.correct, int.from_bytes(split_seed, "big"), hashes[slots + 2], len(chunks.hashes), *chunks.hashes]
        free += [hashes[i] for i in range(slots) if not self.present[i]]
        return market_proof(self.proof.proof, free)


def evaluate(statement: SettlementStatement) -> tuple[int, list[int]]:
    """The float statement: (correct count of the final model, contributions)."""
    with torch.no_grad():
        correct, contributions, _, _, _ = statement.circuit()(
            *[torch.from_numpy(np.ascontiguousarray(a)) for a in statement.inputs()]
        )
    return int(correct.item()), [int(v) for v in contributions.numpy()[0]]


def prove_settlement(build: CircuitBuild, statement: SettlementStatement) -> SettlementProof:
    """Prove the statement; the circuit's arithmetic is exact, so its correct count and
    contributions must equal the float ones (`ProofMismatchError` otherwise)."""
    float_correct, float_contributions = evaluate(statement)
    proof = prove(build, statement.inputs())
    (correct,), contributions, (unpacked,) = proof.outputs[0], proof.outputs[1], proof.outputs[4]
    if unpacked != 1:
        raise ProofMismatchError("the circuit could not unpack the final model: it is not a packed grid model")
    if correct != float_correct or list(contributions) != float_contributions:
        raise ProofMismatchError(
            f"in-circuit correct count {correct} and contributions {contributions} differ from the float "
            f"{float_correct} and {float_contributions}"
        )
    present = [m is not None for m in statement.models]
    return SettlementProof(
        proof, int(correct), len(statement.test), [int(c) for c in contributions], float_correct, present
    )


def settlement_circuit(trainers: int, model: ModelConfig, samples: int) -> SettlementCircuit:
    if model.kind not in (ModelKind.lr, ModelKind.mlp):
        raise ZKError(f"the settlement circuit scores LR and MLP models; a {model.kind.value} market settles unproven")
    hidden = None if model.kind == ModelKind.lr else model.hidden
    return SettlementCircuit(trainers, model.in_features, model.classes, samples, hidden).double()


def build_settlement_circuit(
    trainers: int, model: ModelConfig, samples: int, settings: Settings | None = None
) -> CircuitBuild:
    settings = settings or load_settings()
    spec = settlement_circuit_spec(trainers, model, samples, settings.zk_columns)
    return spec.build(settings.zk_cache_dir, settings.zk_srs_path)


def settlement_circuit_spec(trainers: int, model: ModelConfig, samples: int, columns: int | None) -> CircuitSpec:
    """The settlement circuit before it is built (`.shape` lays it out without setting it up)."""
    circuit = settlement_circuit(trainers, model, samples)
    d, f, c = parameter_count(model), model.in_features, model.classes
    statement = SettlementStatement(
        [np.zeros(d)] * trainers, np.zeros(d), np.zeros((samples, f + c)), np.zeros((trainers, trainers)), 0, model
    )
    example = [torch.from_numpy(np.ascontiguousarray(a)) for a in statement.inputs()]
    shape = f"f{f}-c{c}" if circuit.hidden is None else f"mlp{circuit.hidden}-f{f}-c{c}"
    # exact: no product is rescaled and 0/1 constants are at scale 0
    run_args = RunArgs(
        num_inner_cols=columns,
        scale_rebase_multiplier=circuit.scale_rebase_multiplier,
        rebase_frac_zero_constants=True,
    )
    return CircuitSpec(f"settlement-L{trainers}-{shape}-n{samples}", circuit, example, run_args)
