"""The settlement statement in float and as a proof (fedmarket/zk/settlement_circuit.py), and the
two things it is bound to besides the models: the owner's test chunks and the RLOO subsets.
A proven settlement is one such proof per round, or per part of its test chunk
(DataMarket.proveContributions), summed on chain.

- **Test chunks.** In a market whose settlement is proven, the owner's data is cut into K groups
  of `samples` rows (the remainder only ever validates), each group into `parts` chunks of
  `samples / parts` rows, one proof's (a round past one proof's memory is proven in parts whose
  counts add up: its accuracy and RLOO counts are sums over rows). The owner commits at creation
  to `keccak256(abi.encode(uint256[] chunkHashes)) mod FIELD` over the K * parts chunks, each
  chunk hash being EZKL's Poseidon hash of the chunk on the 2^-8 grid (features / 16 and one-hot
  labels). Round r scores group `(splitSeed + r - 1) mod K`, from the seed the trainers'
  commit-reveal fixes; the T rounds' groups are the test set (distinct: K > T is checked at
  creation), every other row validates. The settlement adapter
  (contracts/src/EzklSettlementVerifier.sol) checks the hashes, the index and the parts' sums.
- **RLOO subsets** (sources/004 section III.A): for each benign trainer i of round r, i plus
  `size - 1` other benign trainers, `size = min(N, max(2, ceil(log2 N)))` as
  fedmarket/algorithms/contribution/rloo.py, drawn without replacement by
  `keccak256(abi.encode(seed, i, k)) mod remaining` with the round's seed
  `keccak256(abi.encode(rlooSeed, r)) mod FIELD`; the adapter derives the same matrix in Solidity.
"""

from __future__ import annotations

import dataclasses
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


MAX_SETTLEMENT_PARTS = 16  # EzklSettlementVerifier.MAX_PARTS


def part_rows(samples: int, parts: int) -> int:
    """The rows one proof of a round's `samples` test rows scores, in `parts` proofs."""
    if not 1 <= parts <= MAX_SETTLEMENT_PARTS or samples % parts:
        raise ZKError(
            f"a round's {samples} test rows cannot be proven in {parts} parts: 1 to {MAX_SETTLEMENT_PARTS} "
            "parts of equal rows"
        )
    return samples // parts


@dataclass(frozen=True)
class DataChunks:
    hashes: list[int]  # one per chunk of samples / parts rows, `parts` per group
    commitment: str  # the market's data commitment, bytes32 hex

    @classmethod
    def of(cls, data: Dataset, samples: int, model: ModelConfig, rounds: int = 1, parts: int = 1) -> DataChunks:
        rows, size = chunk_rows(data, model), part_rows(samples, parts)
        hashes = [
            int(poseidon_commitment(rows[k * size : (k + 1) * size]), 16)
            for k in range(chunk_count(data, samples, rounds) * parts)
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

    def parts(self, parts: int) -> list[SettlementStatement]:
        """The statement over each of `parts` equal slices of the test rows, in order."""
        size = part_rows(len(self.test), parts)
        return [dataclasses.replace(self, test=self.test[j * size : (j + 1) * size]) for j in range(parts)]

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
    """A round's contributions proven in one proof per part of its test rows (one part: one proof);
    the counts are the parts' sums."""

    proofs: list[Proof]
    part_correct: list[int]
    samples: int  # the round's test rows, every part's
    part_contributions: list[list[int]]
    float_correct: int
    present: list[bool]

    @property
    def correct(self) -> int:
        return sum(self.part_correct)

    @property
    def contributions(self) -> list[int]:
        return [sum(column) for column in zip(*self.part_contributions)]

    @property
    def accuracy_bps(self) -> int:
        return self.correct * 10_000 // self.samples

    def calldata(self, split_seed: bytes, chunks: DataChunks) -> bytes:
        """The `proof` argument of `proveContributions` (contracts/src/EzklSettlementVerifier.sol):
        abi.encode(bytes[] halo2Proofs, uint256[] free), free = [correct_0, splitSeed, h(public), K,
        chunk hashes..., hashes of absent slots..., then each later part's correct count and
        contributions as its proof carries them]."""
        first, slots = self.proofs[0], len(self.present)
        hashes = first.input_hashes
        free = [self.part_correct[0], int.from_bytes(split_seed, "big"), hashes[slots + 2], len(chunks.hashes)]
        free += [*chunks.hashes, *(hashes[i] for i in range(slots) if not self.present[i])]
        for proof in self.proofs[1:]:
            counts = len(proof.input_hashes)  # the outputs follow the input hashes: correct, C_0..C_{L-1}
            free += proof.instances[counts : counts + 1 + slots]
        return encode(["bytes[]", "uint256[]"], [[proof.proof for proof in self.proofs], free])


def evaluate(statement: SettlementStatement) -> tuple[int, list[int]]:
    """The float statement: (correct count of the final model, contributions)."""
    with torch.no_grad():
        correct, contributions, _, _, _ = statement.circuit()(
            *[torch.from_numpy(np.ascontiguousarray(a)) for a in statement.inputs()]
        )
    return int(correct.item()), [int(v) for v in contributions.numpy()[0]]


def prove_settlement(build: CircuitBuild, statement: SettlementStatement, parts: int = 1) -> SettlementProof:
    """Prove the statement in `parts` proofs of `build` (one per equal slice of the test rows, in
    turn, so memory is one proof's); the circuit's arithmetic is exact, so each part's correct count
    and contributions must equal the float ones (`ProofMismatchError` otherwise)."""
    proofs, corrects, vectors, float_total = [], [], [], 0
    for j, part in enumerate(statement.parts(parts)):
        float_correct, float_contributions = evaluate(part)
        proof = prove(build, part.inputs())
        (correct,), contributions, (unpacked,) = proof.outputs[0], proof.outputs[1], proof.outputs[4]
        if unpacked != 1:
            raise ProofMismatchError("the circuit could not unpack the final model: it is not a packed grid model")
        if correct != float_correct or list(contributions) != float_contributions:
            raise ProofMismatchError(
                f"in-circuit correct count {correct} and contributions {contributions} of part {j} differ from "
                f"the float {float_correct} and {float_contributions}"
            )
        proofs.append(proof)
        corrects.append(int(correct))
        vectors.append([int(c) for c in contributions])
        float_total += float_correct
    present = [m is not None for m in statement.models]
    return SettlementProof(proofs, corrects, len(statement.test), vectors, float_total, present)


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
