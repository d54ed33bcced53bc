"""The project owner's step: check its data, publish the task and the data by CID, and create the
market with its escrow (and, for a proven market, the verifiers of its circuits)."""

from __future__ import annotations

from typing import NamedTuple

from fedmarket.algorithms.contribution import DEFAULT_METRIC, PROVEN_CONTRIBUTION
from fedmarket.algorithms.outliers import DEFAULT_DETECTOR, DETECTORS, PROVABLE_DETECTORS, PROVEN_DETECTOR
from fedmarket.chain import FactoryClient, MarketClient, TxResult
from fedmarket.commitments import commit
from fedmarket.context import current_platform
from fedmarket.datacheck import check_dataset, require_valid
from fedmarket.errors import ConfigError
from fedmarket.identity import Party
from fedmarket.ml.data import Dataset, encode_dataset
from fedmarket.ml.models import parameter_count, pin_architecture
from fedmarket.zk import (
    MAX_ROUND_CHUNKS,
    DataChunks,
    RoundLayout,
    build_market_round,
    build_settlement_circuit,
    deploy_market_round_verifier,
    deploy_settlement_verifier,
    part_rows,
)
from fedmarket_schemas.market import (
    SECURE_RULES,
    Aggregation,
    DataSchema,
    DifferentialPrivacy,
    MarketSpec,
    ModelKind,
    RewardSchedule,
    TaskSpec,
    TrainingConfig,
)
from fedmarket_tasks.common import once_task

ETHER = 10**18
DEFAULT_SCHEDULE = RewardSchedule(thresholds_bps=(5000, 8000, 9000), pools_wei=(ETHER // 5, ETHER // 2, ETHER))


class Published(NamedTuple):
    market: MarketClient
    created: TxResult
    factory: FactoryClient
    task: TaskSpec


@once_task(task_run_name="create-market")
def publish_market(
    owner: str,
    data: Dataset,
    kind: ModelKind,
    *,
    prove_rounds: bool = False,
    test_rows: int | None = None,
    round_inputs: str | None = None,
    round_chunks: int | None = None,
    settlement_parts: int | None = None,
    detector: str | None = None,
    schema: DataSchema | None = None,
    module: str | None = None,
    training: TrainingConfig | None = None,
    privacy: DifferentialPrivacy | None = None,
    aggregation: Aggregation = Aggregation.plain,
    norm_bound: float | None = None,
    **terms,
) -> Published:
    """Check the owner's data against the task's expectations, store task and data by CID, and
    create the market through the factory (FEDMARKET_FACTORY_ADDRESS, else a new one) with the
    largest possible payout in escrow. `prove_rounds`: reference the round circuit's verifier for
    this L and model; `test_rows` (with `prove_rounds`): prove settlement too, each round on its own
    test chunk of that many rows (fedmarket/zk/settlement_proof.py); `round_inputs`: "poseidon" (the
    default, and the only one with `test_rows`) or "kzg", how the round circuit binds the models
    (fedmarket/zk/round_proof.py); `round_chunks`: prove each round in that many parameter chunks
    (hashed, without a proven settlement: fedmarket/zk/round_split.py), for rounds past one
    proof's memory; `settlement_parts` (with `test_rows`): prove each round's test chunk in that many
    proofs of equal rows, for chunks past one proof's memory. Circuits are built and verifiers deployed
    once per circuit and chain. `detector`: the outlier rule by registered name (default: the
    proven rule in a proven market, else DEFAULT_DETECTOR); a proven market refuses a rule no
    circuit proves. `schema`: what the data looks like (default: digits'); the model reads its
    features and classes. `module`: with kind module, the owner's 'package.module:Class', whose
    architecture the task pins. `training`: how trainers train (default: the model's,
    `TrainingConfig.for_model`). `privacy`: DP-SGD that every trainer must train with
    (fedmarket.ml.privacy). `aggregation`: secure, for updates masked so that nobody sees one
    (fedmarket/secagg; no verifiers, its own rules), with `norm_bound` the L2 bound each trainer
    proves of its update (fedmarket/zk/norm_proof.py). `terms`: the other MarketSpec fields."""
    platform = current_platform()
    owner = platform.party(owner)
    if test_rows is not None and not prove_rounds:
        raise ConfigError("a proven settlement needs proven rounds: its proof binds their Poseidon commitments")
    if round_inputs not in (None, "kzg", "poseidon") or (round_inputs is not None and not prove_rounds):
        raise ConfigError(f"round inputs {round_inputs!r}: kzg or poseidon, for a market that proves its rounds")
    if round_inputs == "kzg" and test_rows is not None:
        raise ConfigError(
            "KZG round inputs cannot go with a proven settlement, whose circuit reads Poseidon commitments"
        )
    if round_chunks is not None:
        if not prove_rounds or round_inputs == "kzg" or test_rows is not None:
            raise ConfigError(
                f"rounds in {round_chunks} chunks: for a market that proves its rounds with hashed inputs and not "
                "its settlement (the settlement circuit reads each whole model's Poseidon hash)"
            )
        if not 2 <= round_chunks <= MAX_ROUND_CHUNKS:
            raise ConfigError(f"rounds in {round_chunks} chunks: 2 to {MAX_ROUND_CHUNKS} (EzklSplitRoundVerifier)")
    if settlement_parts is not None and (test_rows is None or settlement_parts < 2):
        raise ConfigError(
            f"settlement in {settlement_parts} parts: 2 or more parts of a proven settlement's test chunk (test rows)"
        )
    secure = Aggregation(aggregation) == Aggregation.secure
    if secure and prove_rounds:
        raise ConfigError("secure aggregation has no round proofs: the round circuit reads every update")
    if secure and detector not in (None, SECURE_RULES["detector"]):
        raise ConfigError(f"secure aggregation sees no single update, so it cannot run detector {detector!r}")
    if secure:
        detector = SECURE_RULES["detector"]
    detector = detector or (PROVEN_DETECTOR if prove_rounds else DEFAULT_DETECTOR)
    DETECTORS.get(detector)  # an unknown name is refused here, not in the first round
    if prove_rounds and detector not in PROVABLE_DETECTORS:
        raise ConfigError(
            f"a market with a round verifier runs a proven rule; detector {detector!r} has no circuit "
            f"(provable: {', '.join(sorted(PROVABLE_DETECTORS))})"
        )
    task = TaskSpec.for_data(
        schema or DataSchema(),
        kind,
        module=module,
        name="digits" if schema is None else "task",
        test_chunk_rows=test_rows,
        test_chunk_parts=settlement_parts or 1,
        detector=detector,
        # a proven settlement pays what its circuit proves; a secure one what the chain shows
        contribution=PROVEN_CONTRIBUTION
        if test_rows is not None
        else SECURE_RULES["contribution"]
        if secure
        else DEFAULT_METRIC,
        aggregation=aggregation,
        norm_bound=norm_bound,
    )
    training = (training or task.training).model_copy(update={"dp": privacy})
    task = task.model_copy(update={"model": pin_architecture(task.model), "training": training})
    require_valid(check_dataset(data.features, data.labels, task.data_schema, dataset="owner"))
    # one test chunk per round and one to validate, checked before anything is built or sent
    chunks = (
        DataChunks.of(data, test_rows, task.model, terms["rounds"], task.test_chunk_parts)
        if test_rows is not None
        else None
    )
    raw = encode_dataset(data)
    data_commitment = commit(raw)
    if platform.settings.factory_address:
        factory = FactoryClient(platform.chain, platform.settings.factory_address)
    else:
        factory, _ = FactoryClient.deploy(platform.chain, owner.account)
    if prove_rounds:
        # hashed inputs unless KZG is asked for (never with a proven settlement: its circuit reads
        # Poseidon commitments): at L = 8 they verify for less gas, KZG proves faster
        layout = RoundLayout("polycommit" if round_inputs == "kzg" else "poseidon", round_chunks or 1)
        terms["round_verifier"] = _round_verifier(factory, owner, task, terms["trainers"], layout)
    if chunks is not None:
        terms["settlement_verifier"] = _settlement_verifier(factory, owner, task, terms["trainers"])
        data_commitment = chunks.commitment
    spec = MarketSpec(
        task_cid=str(platform.store.put(task.model_dump_json().encode())),
        data_cid=str(platform.store.put(raw)),
        data_commitment=data_commitment,
        **terms,
    )
    market, created = factory.create_market(owner.account, spec, spec.max_payout())
    return Published(market, created, factory, task)


def _round_verifier(factory: FactoryClient, owner: Party, task: TaskSpec, trainers: int, layout: RoundLayout) -> str:
    circuit = build_market_round(layout, trainers, parameter_count(task.model), current_platform().settings)
    return deploy_market_round_verifier(factory, owner.account, circuit, trainers).adapter


def _settlement_verifier(factory: FactoryClient, owner: Party, task: TaskSpec, trainers: int) -> str:
    parts = task.test_chunk_parts
    rows = part_rows(task.test_chunk_rows, parts)
    build = build_settlement_circuit(trainers, task.model, rows, current_platform().settings)
    return deploy_settlement_verifier(factory, owner.account, build, trainers, rows, parts).adapter
