"""EZKL builds, cached by circuit hash: ONNX export, settings, compile and setup run once per
circuit (never per round), then every proof reuses the keys.

The hash covers the ONNX bytes, the run arguments and the EZKL version, so a changed circuit, scale
or toolchain is a new build and an unchanged one is found again by any process sharing the cache
directory. A build directory is complete only once its `ready` marker exists; a crash midway
leaves nothing a later call would trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import ezkl
import torch

from fedmarket.errors import ZKError
from fedmarket.fixed_point import FRAC_BITS
from fedmarket.zk.ezkl.cache import PARTIAL, PROVING_KEY, mark_used
from fedmarket.zk.ezkl.srs import srs_for

log = logging.getLogger(__name__)

EZKL_VERSION = "23.0.5"


@dataclass(frozen=True)
class RunArgs:
    """The EZKL run arguments chosen on purpose (no calibration: it fails on wide ranges).

    Inputs hashed (their Poseidon hashes are the commitments) unless `input_visibility` says
    polycommit, outputs public, constants fixed.
    `decomp_legs` legs of 2^14 bound every range-checked value: 3 legs cover |x| < 2^41 at scale 8,
    room for the squared statistics of the round rule."""

    input_scale: int = FRAC_BITS
    param_scale: int = FRAC_BITS
    decomp_legs: int = 3
    # Columns per op: more columns, fewer rows, but more columns to commit to, a larger generated
    # verifier and more verification gas (round verifier: 18 KB at 2, 24.2 KB at 4, EIP-170's
    # limit). None: the fewest of AUTO_COLUMNS that needs no more rows (choose_columns).
    num_inner_cols: int | None = None
    # EZKL 23's Freivalds argument for matrix products adds a phase and challenge columns: its
    # generated verifier is then 45 KB, over EIP-170, and setup 3x slower on these circuits.
    disable_freivalds: bool = True
    # A product's scale is brought back to the input scale once it exceeds this multiple of it: 1
    # rescales (and rounds) every product of two scale-8 values; 2 keeps them at scale 16, exact.
    scale_rebase_multiplier: int = 1
    # Integral constants (0, 1, identity matrices) at scale 0, so a product with them needs no rescale.
    rebase_frac_zero_constants: bool = False
    # "hashed": each input's Poseidon hash is a public instance; "polycommit": the proof carries a
    # KZG commitment to each input (additively homomorphic, fedmarket/zk/norm_proof.py).
    input_visibility: str = "hashed"
    # "public": the outputs are instances; "hashed": one Poseidon hash per output, the instance a
    # later proof takes as the hash of an input (fedmarket/zk/round_split.py links proofs by it).
    output_visibility: str = "public"
    # EZKL range-checks every input and output unless told not to: only for a circuit whose inputs
    # another proof range-checked (as its outputs) or that its own comparisons bound, and whose
    # outputs the verifier compares with values of its own (the split round's rule proof).
    range_check_io: bool = True

    def tocall_ezkl(self) -> ezkl.PyRunArgs:
        args = ezkl.PyRunArgs()
        args.input_visibility = self.input_visibility
        args.output_visibility = self.output_visibility
        args.ignore_range_check_inputs_outputs = not self.range_check_io
        args.param_visibility = "fixed"
        args.input_scale = self.input_scale
        args.param_scale = self.param_scale
        args.decomp_legs = self.decomp_legs
        args.num_inner_cols = self.num_inner_cols
        args.disable_freivalds = self.disable_freivalds
        args.scale_rebase_multiplier = self.scale_rebase_multiplier
        args.rebase_frac_zero_constants = self.rebase_frac_zero_constants
        return args


@dataclass(frozen=True)
class CircuitShape:
    """Where a circuit's rows go, read from EZKL's settings (before any setup)."""

    logrows: int
    columns: int
    hash_rows: int  # rows of the Poseidon chip that hashes the inputs (0 under polycommit)
    arith_rows: int  # rows of the graph's own arithmetic: its assignments over its columns
    commitment: str  # how the inputs are bound: "poseidon" (hashes are instances) or "polycommit" (KZG)

    @classmethod
    def of(cls, settings: dict) -> CircuitShape:
        run_args = settings["run_args"]
        columns = int(run_args["num_inner_cols"])
        return cls(
            logrows=int(run_args["logrows"]),
            columns=columns,
            hash_rows=int((settings.get("module_sizes") or {}).get("poseidon", [0])[0]),
            arith_rows=-(-int(settings["total_assignments"]) // columns),
            commitment="polycommit" if run_args.get("input_visibility") == "KZGCommit" else "poseidon",
        )


@dataclass(frozen=True)
class CircuitBuild:
    """A built circuit in the cache: paths of its artefacts and what setup cost."""

    name: str
    digest: str
    dir: Path
    srs_path: Path
    srs_origin: str
    built_now: bool = field(default=False, compare=False)  # set up by this call, not found in the cache

    @property
    def onnx(self) -> Path:
        return self.dir / "circuit.onnx"

    @property
    def settings_path(self) -> Path:
        return self.dir / "settings.json"

    @property
    def compiled(self) -> Path:
        return self.dir / "circuit.ezkl"

    @property
    def vk(self) -> Path:
        return self.dir / "vk.key"

    @property
    def pk(self) -> Path:
        return self.dir / PROVING_KEY

    def settings(self) -> dict:
        return json.loads(self.settings_path.read_text())

    @property
    def logrows(self) -> int:
        return self.shape.logrows

    @property
    def columns(self) -> int:
        return self.shape.columns

    @property
    def setup_report(self) -> dict:
        return json.loads((self.dir / "ready").read_text())

    @property
    def shape(self) -> CircuitShape:
        return CircuitShape.of(self.settings())

    @property
    def commitment(self) -> str:
        return self.shape.commitment


@dataclass(frozen=True)
class CircuitSpec:
    """A circuit before it is built: its cache name, torch module, example inputs and run arguments."""

    name: str
    module: torch.nn.Module
    example: list[torch.Tensor]
    run_args: RunArgs

    def build(self, cache_dir: Path, srs_path: Path | None = None) -> CircuitBuild:
        return build_circuit(self.name, self.module, self.example, cache_dir, run_args=self.run_args, srs_path=srs_path)

    def shape(self, cache_dir: Path) -> CircuitShape:
        return lay_out(self.module, self.example, cache_dir, run_args=self.run_args)


def export_onnx(module: torch.nn.Module, example: list[torch.Tensor]) -> bytes:
    """The module as ONNX (TorchScript exporter: the graph EZKL reads, deterministic bytes)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.float().eval(),
            tuple(t.float() for t in example),
            buffer,
            input_names=[f"in{i}" for i in range(len(example))],
            dynamo=False,
            opset_version=17,
        )
    return buffer.getvalue()


def circuit_digest(onnx_bytes: bytes, run_args: RunArgs) -> str:
    h = hashlib.sha256()
    h.update(onnx_bytes)
    # a default visibility stays out of the digest, so the circuits built before it keep theirs
    defaults = {("input_visibility", "hashed"), ("output_visibility", "public"), ("range_check_io", True)}
    chosen = {k: v for k, v in run_args.__dict__.items() if (k, v) not in defaults}
    h.update(json.dumps(chosen, sort_keys=True).encode())
    h.update(EZKL_VERSION.encode())
    return h.hexdigest()


def build_circuit(
    name: str,
    module: torch.nn.Module,
    example: list[torch.Tensor],
    cache_dir: Path,
    *,
    run_args: RunArgs = RunArgs(),
    srs_path: Path | None = None,
) -> CircuitBuild:
    """Export, settings, compile and setup, or the cached build with the same circuit hash."""
    onnx_bytes = export_onnx(module, example)
    if run_args.num_inner_cols is None:
        run_args = replace(run_args, num_inner_cols=choose_columns(onnx_bytes, run_args, Path(cache_dir)))
    digest = circuit_digest(onnx_bytes, run_args)
    target = Path(cache_dir) / f"{name}-{digest[:16]}"
    if (target / "ready").is_file():
        settings = json.loads((target / "settings.json").read_text())
        srs, origin = srs_for(int(settings["run_args"]["logrows"]), Path(cache_dir), srs_path)
        build = CircuitBuild(name, digest, target, srs, origin)
        if not build.pk.is_file():
            _setup_again(build)
        mark_used(target)
        return build

    work = target.with_name(target.name + PARTIAL)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    build = CircuitBuild(name, digest, work, Path(), "")
    build.onnx.write_bytes(onnx_bytes)
    started = time.perf_counter()
    _gen_settings(build.onnx, build.settings_path, run_args)
    call_ezkl("compile_circuit", ezkl.compile_circuit, str(build.onnx), str(build.compiled), str(build.settings_path))
    logrows = build.logrows
    srs_started = time.perf_counter()
    srs, origin = srs_for(logrows, Path(cache_dir), srs_path)
    srs_s = time.perf_counter() - srs_started  # once per logrows, not per circuit: not setup's
    call_ezkl("setup", ezkl.setup, str(build.compiled), str(build.vk), str(build.pk), str(srs))
    setup_s = time.perf_counter() - started - srs_s
    settings = build.settings()
    report = {
        "name": name,
        "digest": digest,
        "setup_s": setup_s,
        "srs_s": srs_s,
        "logrows": logrows,
        "num_rows": settings.get("num_rows"),
        "pk_bytes": build.pk.stat().st_size,
        "srs_origin": origin,
    }
    (work / "ready").write_text(json.dumps(report, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    mark_used(target)
    log.info("built circuit %s (%s): logrows %d, setup %.1f s", name, digest[:16], logrows, setup_s)
    return CircuitBuild(name, digest, target, srs, origin, built_now=True)


def lay_out(
    module: torch.nn.Module, example: list[torch.Tensor], cache_dir: Path, *, run_args: RunArgs = RunArgs()
) -> CircuitShape:
    """The shape `build_circuit` would give the module, from EZKL's settings alone: no compile,
    no SRS, no setup, so a circuit past this machine's memory can still be sized. EZKL's count
    of assignments can come out a few apart between calls on the same circuit."""
    onnx_bytes = export_onnx(module, example)
    if run_args.num_inner_cols is None:
        run_args = replace(run_args, num_inner_cols=choose_columns(onnx_bytes, run_args, Path(cache_dir)))
    with tempfile.TemporaryDirectory(prefix="fedmarket-layout-") as tmp:
        onnx, path = Path(tmp, "circuit.onnx"), Path(tmp, "settings.json")
        onnx.write_bytes(onnx_bytes)
        _gen_settings(onnx, path, run_args)
        return CircuitShape.of(json.loads(path.read_text()))


def _setup_again(build: CircuitBuild) -> None:
    """The proving key of a build whose key was pruned (fedmarket/zk/ezkl/cache.py), set up from the
    compiled circuit kept beside it. Setup is deterministic for a compiled circuit and SRS, so the
    verifying key, and every verifier deployed for it, stays the same; checked, because another
    SRS gives another key. (Compiling again would do the same only for builds made since
    _fix_settings sorts their range checks; older builds keep the order they were made with.)"""
    if not build.vk.is_file():
        raise ZKError(f"{build.dir} has lost both its keys: remove the directory to build the circuit anew")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="setup-again-", dir=build.dir) as tmp:
        vk, pk = Path(tmp, "vk.key"), Path(tmp, "pk.key")
        call_ezkl("setup", ezkl.setup, str(build.compiled), str(vk), str(pk), str(build.srs_path))
        if vk.read_bytes() != build.vk.read_bytes():
            raise ZKError(
                f"setting {build.dir.name} up again gave another verifying key: {build.srs_path} is not the SRS "
                "it was built with, and the verifiers deployed for it would reject its proofs"
            )
        pk.replace(build.pk)
    log.info("set %s up again (proving key pruned): %.1f s", build.dir.name, time.perf_counter() - started)


# Tried when no column count is set; the fewest that needs no larger domain wins. At equal rows,
# fewer columns prove faster, peak lower and verify for less gas (fewer columns to commit to);
# where one column would double the domain (the settlement circuit), two win. 4 is left out: it
# reaches EIP-170's code-size limit and costs more gas than 2.
AUTO_COLUMNS = (1, 2)


def choose_columns(onnx_bytes: bytes, run_args: RunArgs, cache_dir: Path) -> int:
    """The fewest of AUTO_COLUMNS whose rows fit the smallest domain any of them fits; chosen once
    per circuit (gen_settings per candidate) and remembered in the cache directory."""
    choice = cache_dir / f"columns-{circuit_digest(onnx_bytes, run_args)[:16]}.json"
    if choice.is_file():
        return int(json.loads(choice.read_text())["columns"])
    logrows = {}
    with tempfile.TemporaryDirectory(prefix="fedmarket-columns-") as tmp:
        onnx = Path(tmp, "circuit.onnx")
        onnx.write_bytes(onnx_bytes)
        for columns in AUTO_COLUMNS:
            path = Path(tmp, f"settings-{columns}.json")
            _gen_settings(onnx, path, replace(run_args, num_inner_cols=columns))
            logrows[columns] = int(json.loads(path.read_text())["run_args"]["logrows"])
    best = min(AUTO_COLUMNS, key=lambda c: (logrows[c], c))
    cache_dir.mkdir(parents=True, exist_ok=True)
    choice.write_text(json.dumps({"columns": best, "logrows": logrows}))
    return best


# rows halo2 keeps for blinding and the last row; the range-check table needs 2^14 rows
_RESERVED_ROWS = 64
_MIN_LOGROWS = 15


def _gen_settings(onnx: Path, settings_path: Path, run_args: RunArgs) -> None:
    call_ezkl("gen_settings", ezkl.gen_settings, str(onnx), str(settings_path), py_run_args=run_args.tocall_ezkl())
    _fix_settings(settings_path)


def _fix_settings(settings_path: Path) -> None:
    """gen_settings leaves logrows at its default (17): set the smallest that fits the rows. It
    also lists the range checks and lookups in hash-set order, which differs from build to build
    and orders their tables' columns, hence the keys (the tiny round circuit: 2 orders and 2
    verifying keys over 4 builds): sort them, so one circuit and SRS give one verifying key on
    any machine, and anyone can rebuild a deployed verifier and compare."""
    settings = json.loads(settings_path.read_text())
    rows = int(settings["num_rows"]) + _RESERVED_ROWS
    settings["run_args"]["logrows"] = max(_MIN_LOGROWS, (rows - 1).bit_length())
    for listed in ("required_range_checks", "required_lookups"):
        settings[listed] = sorted(settings.get(listed) or [], key=json.dumps)
    settings_path.write_text(json.dumps(settings))


def call_ezkl(step: str, fn, *args, **kwargs):
    """Run one EZKL step; its plain exceptions and False results become ZKError."""
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        raise ZKError(f"EZKL {step} failed: {exc}") from exc
    if result is False:
        raise ZKError(f"EZKL {step} failed")
    return result
