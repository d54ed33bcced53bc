"""Witness and proof for a built circuit, and the integers the contract compares them with."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ezkl
import numpy as np

from fedmarket.errors import ZKError
from fedmarket.field import signed
from fedmarket.fixed_point import on_grid
from fedmarket.zk.ezkl.cache import record_prove_time
from fedmarket.zk.ezkl.poseidon import felt_to_int, felts
from fedmarket.zk.ezkl.toolchain import CircuitBuild, call_ezkl


@dataclass(frozen=True)
class Proof:
    """A proof with its public instances (field elements, in the circuit's order: one Poseidon
    hash per hashed input, then every output, or one hash per output where they are hashed) and
    the outputs read as signed integers at scale 0."""

    proof: bytes
    instances: list[int]
    input_hashes: list[int]
    outputs: list[list[int]]
    witness_s: float
    prove_s: float
    proof_json: str  # EZKL's proof file, for verify_locally
    output_hashes: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.proof)


@dataclass(frozen=True)
class Witness:
    """EZKL's witness for one circuit's inputs: what a proof of them would show, before proving."""

    build: CircuitBuild
    text: str  # EZKL's witness file
    data: dict
    seconds: float

    @property
    def outputs(self) -> list[list[int]]:
        """The circuit's outputs as signed integers at scale 0."""
        return [[signed(felt_to_int(f)) for f in out] for out in self.data["outputs"]]

    def hashes(self, side: str) -> list[int]:
        """The Poseidon hash of each hashed input (`side` "inputs") or output ("outputs")."""
        return [felt_to_int(h) for h in (self.data.get(f"processed_{side}") or {}).get("poseidon_hash") or []]


def witness(build: CircuitBuild, inputs: list[np.ndarray]) -> Witness:
    """The witness for `inputs` (grid values, one array per circuit input). They reach EZKL as
    field elements: it would read floats through float32, which holds a packed element
    (fedmarket/packing.py) only approximately."""
    for i, values in enumerate(inputs):
        if not on_grid(values):
            raise ZKError(f"input {i} of circuit {build.name} is not on the 2^-8 grid")
    with tempfile.TemporaryDirectory(prefix="fedmarket-witness-") as tmp:
        data, path = Path(tmp, "input.json"), Path(tmp, "witness.json")
        data.write_text(json.dumps({"input_data": [felts(v) for v in inputs]}))
        started = time.perf_counter()
        # inputs under KZG commitments: the witness carries them, made with the build's keys
        keys = {"vk_path": str(build.vk), "srs_path": str(build.srs_path)} if build.commitment == "polycommit" else {}
        result = call_ezkl("gen_witness", ezkl.gen_witness, str(data), str(build.compiled), str(path), **keys)
        seconds = time.perf_counter() - started
        return Witness(build, path.read_text(), result, seconds)


def circuit_outputs(build: CircuitBuild, inputs: list[np.ndarray]) -> list[list[int]]:
    """What the circuit computes on `inputs`, from the witness alone (no proving)."""
    return witness(build, inputs).outputs


def prove(build: CircuitBuild, inputs: list[np.ndarray]) -> Proof:
    """Witness and proof for `inputs` (grid values, one array per circuit input)."""
    return prove_witness(witness(build, inputs))


def prove_witness(w: Witness) -> Proof:
    """The proof of a witness already generated (and, say, inspected)."""
    build = w.build
    with tempfile.TemporaryDirectory(prefix="fedmarket-proof-") as tmp:
        path, proof_path = Path(tmp, "witness.json"), Path(tmp, "proof.json")
        path.write_text(w.text)
        started = time.perf_counter()
        call_ezkl(
            "prove", ezkl.prove, str(path), str(build.compiled), str(build.pk), str(proof_path), str(build.srs_path)
        )
        prove_s = time.perf_counter() - started
        record_prove_time(build.dir, prove_s)
        text = proof_path.read_text()
    produced = json.loads(text)
    instances = [felt_to_int(f) for f in produced["instances"][0]]
    proof = bytes.fromhex(produced["hex_proof"].removeprefix("0x"))
    return Proof(proof, instances, w.hashes("inputs"), w.outputs, w.seconds, prove_s, text, w.hashes("outputs"))


def verify_locally(build: CircuitBuild, proof: Proof) -> bool:
    """EZKL's native verifier over the proof file: the contract's check, off chain."""
    return verify_file(build, proof.proof_json)


def verify_file(build: CircuitBuild, proof_json: str) -> bool:
    """EZKL's native verifier over a proof file's text, with the build's verifying key."""
    with tempfile.TemporaryDirectory(prefix="fedmarket-verify-") as tmp:
        path = Path(tmp, "proof.json")
        path.write_text(proof_json)
        try:
            return bool(ezkl.verify(str(path), str(build.settings_path), str(build.vk), str(build.srs_path)))
        except Exception:  # noqa: BLE001 - EZKL raises on a proof it rejects
            return False
