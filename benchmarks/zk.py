"""`fedmarket bench zk`: what proving costs at full size: setup (once per circuit), witness and
proof, peak memory, proof size and verification gas, for the round circuit and the settlement
circuit, on models trained on digits (L trainers, IID, one local run each from the same start
model, on the 2^-8 grid) and a test chunk of the owner's digits.

Setup and proving run in child processes of their own, so each peak RSS is that step's alone and
not the benchmark's. Verification gas is measured on the in-process EVM: EZKL's generated
verifier alone, and a market's whole `finalizeRound` through the round adapter.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from eth_utils import keccak
from pydantic import BaseModel, Field

from fedmarket.chain import Chain, FactoryClient, account_from_key
from fedmarket.commitments import commit
from fedmarket.context import Platform
from fedmarket.fixed_point import FRAC_BITS, quantize
from fedmarket.ml.data import load_digits_dataset, owner_split, split_iid
from fedmarket.ml.models import parameter_count
from fedmarket.ml.training import initial_model, train_local
from fedmarket.settings import Settings, load_settings
from fedmarket.simulation.enrol import enrol
from fedmarket.zk import (
    CircuitBuild,
    CircuitShape,
    RoundProof,
    RoundStatement,
    SettlementProof,
    SettlementStatement,
    build_round_circuit,
    build_settlement_circuit,
    build_split_round,
    chunk_rows,
    deploy_round_verifier,
    deploy_split_round_verifier,
    model_commitment,
    part_rows,
    prove_round,
    prove_settlement,
    prove_split_round,
    rloo_subsets,
    round_circuit,
    settlement_circuit_spec,
    split_commitment,
    split_round_circuits,
    verifier_artifact,
)
from fedmarket_benchmarks.gas import funded_party as _party
from fedmarket_schemas.market import ZERO_ADDRESS, MarketSpec, ModelConfig, ModelKind, RewardSchedule, TrainingConfig


class ZKRow(BaseModel):
    circuit: str
    trainers: int
    model: str
    params: int
    logrows: int
    rows: int = Field(description="2^logrows, the proof's domain")
    hash_rows: int = Field(description="rows of the Poseidon chip hashing the inputs (0 under polycommit)")
    arith_rows: int = Field(description="rows of the circuit's own arithmetic at its column count")
    commitment: str = Field(description="how the inputs are bound: poseidon (hashed) or polycommit (KZG)")
    columns: int
    # the rest are None in a layout-only row (`--layout`: sized, not set up or proven)
    setup_s: float | None
    setup_cached: bool | None
    witness_s: float | None
    prove_s: float | None
    peak_rss_bytes: int | None
    pk_bytes: int | None
    proof_bytes: int | None
    verify_gas: int | None
    market_gas: int | None = Field(
        description="the market's whole finalizeRound with the proof (round rows); round-rule: the split adapter's check"
    )
    rounds: int = Field(1, description="settlement: its proofs, one per round; times and gas are their sums")
    chunks: int = Field(
        1,
        description="a round proven by parameter chunks, or a settlement's test chunk in parts: its proofs, times "
        "and gas their sums",
    )
    frac_bits: int


def trained_round(trainers: int, kind: ModelKind, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """The start model and each trainer's model after one local run from it, on the grid."""
    model = ModelConfig(kind=kind)
    _, pool = owner_split(load_digits_dataset(), owner_fraction=0.2, seed=seed)
    training = TrainingConfig.for_model(kind)
    start = quantize(initial_model(model, seed=seed))
    models = [
        quantize(train_local(start, d, model, training, seed=seed + i))
        for i, d in enumerate(split_iid(pool, trainers, seed=seed))
    ]
    return start, models


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _setup(trainers: int, dim: int, settings: Settings, commitment: str) -> tuple[dict, int, bool]:
    started = time.time()
    build = build_round_circuit(trainers, dim, settings, commitment=commitment)
    cached = (build.dir / "ready").stat().st_mtime < started
    return build.setup_report, _peak_rss(), cached


def _prove(statement: RoundStatement, settings: Settings, commitment: str) -> tuple[RoundProof, int]:
    build = build_round_circuit(statement.trainers, statement.dim, settings, commitment=commitment)
    return prove_round(build, statement), _peak_rss()


def _in_child(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_round(
    trainers: int, kind: ModelKind, settings: Settings | None = None, commitment: str = "polycommit"
) -> ZKRow:
    """The round circuit with its inputs bound by `commitment` (polycommit: markets that prove
    their rounds only; poseidon: markets that prove their settlement too)."""
    settings = settings or load_settings()
    start, models = trained_round(trainers, kind)
    statement = RoundStatement(models, 1, domain=1, start=start)
    report, setup_rss, cached = _in_child(_setup, trainers, statement.dim, settings, commitment)
    build = build_round_circuit(trainers, statement.dim, settings, commitment=commitment)
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform.from_settings(Settings(store_dir=Path(tmp) / "blocks", zk_cache_dir=settings.zk_cache_dir))
        market, aggregator, deployed = _proving_market(platform, build, statement, start)
        statement = dataclasses.replace(statement, domain=market.domain(1))
        proof, prove_rss = _in_child(_prove, statement, settings, commitment)
        halo2 = platform.chain.contract_at(verifier_artifact(build)["abi"], deployed.halo2)
        verify_gas = halo2.functions.verifyProof(proof.proof.proof, proof.proof.instances).estimate_gas()
        aggregate_cid = str(platform.store.put(proof.aggregate.tobytes()))
        finalized = market.finalize_round(
            aggregator.account, 1, aggregate_cid, proof.aggregate_commitment, proof.benign_mask, proof.calldata()
        )
        if not market.round_state(1).verified:
            raise AssertionError("the market did not record the round as verified")
    return ZKRow(
        circuit="round",
        trainers=trainers,
        model=kind.value,
        params=statement.dim,
        **_shape(build.shape),
        setup_s=float(report["setup_s"]),
        setup_cached=cached,
        witness_s=proof.proof.witness_s,
        prove_s=proof.proof.prove_s,
        peak_rss_bytes=max(setup_rss, prove_rss),
        pk_bytes=int(report["pk_bytes"]),
        proof_bytes=proof.proof.size,
        verify_gas=int(verify_gas),
        market_gas=finalized.gas_used,
        frac_bits=FRAC_BITS,
    )


def _shape(shape: CircuitShape) -> dict:
    return {"rows": 1 << shape.logrows, **dataclasses.asdict(shape)}


def layout_round(
    trainers: int, kind: ModelKind, settings: Settings | None = None, commitment: str = "polycommit"
) -> ZKRow:
    """The round circuit's shape alone (EZKL's settings, no setup or proof): sizes past this
    machine's memory can still be reported."""
    settings = settings or load_settings()
    spec = round_circuit(trainers, parameter_count(ModelConfig(kind=kind)), settings.zk_columns, commitment)
    return _layout_row("round", trainers, kind, spec.shape(settings.zk_cache_dir))


def layout_settlement(
    trainers: int, samples: int, kind: ModelKind, settings: Settings | None = None, parts: int = 1
) -> ZKRow:
    """The settlement circuit's shape alone, as layout_round (of one part's rows)."""
    settings = settings or load_settings()
    spec = settlement_circuit_spec(trainers, ModelConfig(kind=kind), part_rows(samples, parts), settings.zk_columns)
    return _layout_row("settlement", trainers, kind, spec.shape(settings.zk_cache_dir), chunks=parts)


def _setup_split(trainers: int, dim: int, chunks: int, settings: Settings):
    started = time.time()
    builds = build_split_round(trainers, dim, chunks, settings)
    reports = [b.setup_report for b in (builds.chunk, builds.rule)]
    return reports, _peak_rss(), [(b.dir / "ready").stat().st_mtime < started for b in (builds.chunk, builds.rule)]


def _prove_split(statement: RoundStatement, chunks: int, settings: Settings):
    builds = build_split_round(statement.trainers, statement.dim, chunks, settings)
    return prove_split_round(builds, statement), _peak_rss()


def run_split_round(trainers: int, kind: ModelKind, chunks: int, settings: Settings | None = None) -> list[ZKRow]:
    """A round proven by `chunks` hashed parameter chunks (fedmarket/zk/round_split.py) in a market
    whose round verifier is the split adapter (which takes hashed chunks): a row for its
    chunk proofs (times and gas their sums) and one for its rule proof; peak RSS is the largest of
    the setups and of all the proofs, proven one after another in one child process. verify_gas is
    each generated verifier's alone; the rule row's market_gas is the market's finalizeRound, whose
    split adapter (EzklSplitRoundVerifier) checks every proof and the chunks' commitments."""
    settings = settings or load_settings()
    start, models = trained_round(trainers, kind)
    statement = RoundStatement(models, 1, domain=1, start=start)
    reports, setup_rss, cached = _in_child(_setup_split, trainers, statement.dim, chunks, settings)
    builds = build_split_round(trainers, statement.dim, chunks, settings)
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform.from_settings(Settings(store_dir=Path(tmp) / "blocks", zk_cache_dir=settings.zk_cache_dir))
        deployer = _party(platform, "deployer")
        market, aggregator, _ = _market_over(
            platform,
            statement,
            start,
            lambda values, global_model=False: split_commitment(
                builds.chunk, values, chunks, global_model=global_model
            ),
            lambda factory, owner: deploy_split_round_verifier(
                factory, owner, builds.rule, builds.chunk, trainers, chunks
            ),
        )
        statement = dataclasses.replace(statement, domain=market.domain(1))
        proof, prove_rss = _in_child(_prove_split, statement, chunks, settings)
        gas = []
        for build, proofs in ((builds.chunk, proof.chunk_proofs), (builds.rule, [proof.rule_proof])):
            halo2, _ = platform.chain.deploy_artifact(deployer.account, verifier_artifact(build))
            gas.append(sum(halo2.functions.verifyProof(p.proof, p.instances).estimate_gas() for p in proofs))
        aggregate_cid = str(platform.store.put(proof.aggregate.tobytes()))
        finalized = market.finalize_round(
            aggregator.account, 1, aggregate_cid, proof.aggregate_commitment, proof.benign_mask, proof.calldata()
        )
        if not market.round_state(1).verified:
            raise AssertionError("the market did not record the split round as verified")
    parts = (("round-chunk", builds.chunk, proof.chunk_proofs), ("round-rule", builds.rule, [proof.rule_proof]))
    return [
        ZKRow(
            circuit=circuit,
            trainers=trainers,
            model=kind.value,
            params=statement.dim,
            **_shape(build.shape),
            setup_s=float(report["setup_s"]),
            setup_cached=was_cached,
            witness_s=sum(p.witness_s for p in proofs),
            prove_s=sum(p.prove_s for p in proofs),
            peak_rss_bytes=max(setup_rss, prove_rss),
            pk_bytes=int(report["pk_bytes"]),
            proof_bytes=sum(p.size for p in proofs),
            verify_gas=int(verify_gas),
            market_gas=finalized.gas_used if circuit == "round-rule" else None,
            chunks=chunks,
            frac_bits=FRAC_BITS,
        )
        for (circuit, build, proofs), report, was_cached, verify_gas in zip(parts, reports, cached, gas)
    ]


def layout_split_round(
    trainers: int, kind: ModelKind, chunks: int, settings: Settings | None = None, commitment: str = "polycommit"
) -> list[ZKRow]:
    """The shapes of a split round's chunk circuit and rule circuit, as layout_round."""
    settings = settings or load_settings()
    specs = split_round_circuits(
        trainers, parameter_count(ModelConfig(kind=kind)), chunks, settings.zk_columns, commitment
    )
    return [
        _layout_row(circuit, trainers, kind, spec.shape(settings.zk_cache_dir), chunks=chunks)
        for circuit, spec in zip(("round-chunk", "round-rule"), specs)
    ]


def _layout_row(circuit: str, trainers: int, kind: ModelKind, shape: CircuitShape, chunks: int = 1) -> ZKRow:
    unmeasured = ("setup_s", "setup_cached", "witness_s", "prove_s", "peak_rss_bytes", "pk_bytes", "proof_bytes")
    return ZKRow(
        circuit=circuit,
        trainers=trainers,
        model=kind.value,
        params=parameter_count(ModelConfig(kind=kind)),
        **_shape(shape),
        **dict.fromkeys(unmeasured),
        verify_gas=None,
        market_gas=None,
        chunks=chunks,
        frac_bits=FRAC_BITS,
    )


def _proving_market(platform: Platform, build: CircuitBuild, statement: RoundStatement, start: np.ndarray):
    """A market whose rounds are proven, its L trainers registered, round 1 open and every
    statement model submitted by its commitment (fedmarket.zk.model_commitment)."""
    return _market_over(
        platform,
        statement,
        start,
        lambda values, global_model=False: model_commitment(build, values, global_model=global_model),
        lambda factory, owner: deploy_round_verifier(factory, owner, build, statement.trainers),
    )


def _market_over(platform: Platform, statement: RoundStatement, start: np.ndarray, commitment, deploy=None):
    """As _proving_market, a model's commitment `commitment(values, global_model=...)` and its round
    verifier `deploy(factory, owner account)` (None: a market whose rounds are not proven)."""
    owner, aggregator = _party(platform, "owner"), _party(platform, "aggregator")
    members = [_party(platform, "trainer", i) for i in range(statement.trainers)]
    factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    deployed = deploy(factory, owner.account) if deploy else None
    spec = MarketSpec(
        task_cid=str(platform.store.put(b'{"bench": "zk"}')),
        data_cid=str(platform.store.put(b"owner data")),
        data_commitment=commit(b"owner data"),
        aggregator=aggregator.address,
        aggregator_key="0x" + aggregator.public_box_key.hex(),
        trainers=statement.trainers,
        rounds=1,
        participation_reward_wei=10**15,
        aggregator_fee_wei=10**16,
        schedule=RewardSchedule(thresholds_bps=(5000,), pools_wei=(10**17,)),
        round_verifier=deployed.adapter if deployed else ZERO_ADDRESS,
    )
    market, _ = factory.create_market(owner.account, spec, spec.max_payout())
    enrol(market, members, str(platform.store.put(b'{"bench": "zk"}')))
    market.open_round(
        aggregator.account, str(platform.store.put(start.tobytes())), commitment(start, global_model=True)
    )
    for t, model in zip(members, statement.models):
        market.submit(t.account, 1, str(platform.store.put(model.tobytes())), commitment(model))
    return market, aggregator, deployed


def _prove_settlement(
    statement: SettlementStatement, rows: int, parts: int, settings: Settings
) -> tuple[SettlementProof, int]:
    build = build_settlement_circuit(statement.trainers, statement.model, rows, settings)
    return prove_settlement(build, statement, parts), _peak_rss()


def _setup_settlement(trainers: int, model: ModelConfig, samples: int, settings: Settings) -> tuple[dict, int, bool]:
    started = time.time()
    build = build_settlement_circuit(trainers, model, samples, settings)
    return build.setup_report, _peak_rss(), (build.dir / "ready").stat().st_mtime < started


def run_settlement(
    trainers: int,
    samples: int,
    kind: ModelKind = ModelKind.lr,
    settings: Settings | None = None,
    rounds: int = 1,
    parts: int = 1,
) -> ZKRow:
    """A proven settlement of `rounds` rounds: `parts` proofs per round (DataMarket.proveContributions),
    each over that round's models (`trained_round` with seed r), the last round's mean as the final
    model, and a part of the round's own chunk of `samples` rows of the owner's digits (taken in
    turn, from the start again past the end). Times and gas are the proofs' sums; peak RSS the
    largest; the parts of a round are proven one after another in one process."""
    settings = settings or load_settings()
    model = ModelConfig(kind=kind)
    trained = [trained_round(trainers, kind, seed=r)[1] for r in range(rounds)]
    final = quantize(np.mean(trained[-1], axis=0))
    owner, _ = owner_split(load_digits_dataset(), owner_fraction=0.2, seed=0)
    mask = (1 << trainers) - 1
    statements = [
        SettlementStatement(
            models,
            final,
            chunk_rows(owner.subset(np.arange(r * samples, (r + 1) * samples) % len(owner)), model),
            rloo_subsets(12345 + r, mask, trainers),
            1,
            model,
        )
        for r, models in enumerate(trained)
    ]
    rows = part_rows(samples, parts)
    report, setup_rss, cached = _in_child(_setup_settlement, trainers, model, rows, settings)
    proven = [_in_child(_prove_settlement, statement, rows, parts, settings) for statement in statements]
    build = build_settlement_circuit(trainers, model, rows, settings)
    chain = Chain.connect(Settings())
    deployer = account_from_key(keccak(b"bench-zk/deployer"))
    chain.fund(deployer.address, 10**20)
    halo2, _ = chain.deploy_artifact(deployer, verifier_artifact(build))
    every = [part for proof, _ in proven for part in proof.proofs]
    verify_gas = sum(halo2.functions.verifyProof(part.proof, part.instances).estimate_gas() for part in every)
    return ZKRow(
        circuit="settlement",
        trainers=trainers,
        model=kind.value,
        params=statements[0].circuit().dim,
        **_shape(build.shape),
        setup_s=float(report["setup_s"]),
        setup_cached=cached,
        witness_s=sum(part.witness_s for part in every),
        prove_s=sum(part.prove_s for part in every),
        peak_rss_bytes=max(setup_rss, *(rss for _, rss in proven)),
        pk_bytes=int(report["pk_bytes"]),
        proof_bytes=every[0].size,
        verify_gas=int(verify_gas),
        market_gas=None,
        rounds=rounds,
        chunks=parts,
        frac_bits=FRAC_BITS,
    )
