"""`fedmarket bench norm`: what the norm-bound proof of a secure-aggregation market costs
(fedmarket/zk/norm_proof.py). Per model size d: the circuit's rows and setup (once per circuit),
a trainer's proof each round (seconds, bytes stored with its masked model), and the verification
the aggregator runs for each of its L trainers' submissions (and an auditor again)."""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel

from fedmarket.fixed_point import quantize
from fedmarket.settings import Settings
from fedmarket.zk import build_norm_circuit, norm_domain, prove_norm, verify_norm


class NormRow(BaseModel):
    params: int
    logrows: int
    rows: int
    setup_s: float  # once per circuit (cached by circuit hash), 0 when the build was cached
    pk_bytes: int
    prove_s: float  # per trainer per round, witness included
    proof_bytes: int
    verify_s: float  # per submission, for the aggregator and any auditor
    norm_error: float  # the proven norm against numpy's


def run(params: list[int], settings: Settings, progress=None) -> list[NormRow]:
    rows = []
    for d in params:
        build = build_norm_circuit(d, settings)
        report = build.setup_report
        rng = np.random.default_rng(d)
        start = quantize(rng.normal(0, 0.3, d))
        model = quantize(start + rng.normal(0, 0.05, d))
        domain = norm_domain(31337, "0x" + "5e" * 20, 1, "0x" + "7a" * 20)
        started = time.perf_counter()
        proof = prove_norm(build, model, start, domain)
        prove_s = time.perf_counter() - started
        started = time.perf_counter()
        verify_norm(build, proof.proof_json, commitment=proof.commitment, start=start, domain=domain, bound=1e6)
        verify_s = time.perf_counter() - started
        rows.append(
            NormRow(
                params=d,
                logrows=build.logrows,
                rows=int(report.get("num_rows") or 0),
                setup_s=round(report["setup_s"] if build.built_now else 0.0, 2),
                pk_bytes=int(report["pk_bytes"]),
                prove_s=round(prove_s, 3),
                proof_bytes=proof.size,
                verify_s=round(verify_s, 4),
                norm_error=abs(proof.norm - float(np.linalg.norm(model - start))),
            )
        )
        if progress:
            progress(rows[-1])
    return rows
