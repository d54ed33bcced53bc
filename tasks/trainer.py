"""A trainer's steps: check its local data against the task's expectations, register, and each
round train on private data, seal the local model to the aggregator, store it and submit its CID
with a commitment. The private data never leaves this process: only the sealed model does."""

from __future__ import annotations

import numpy as np

from fedmarket.chain import FactoryClient, TxResult
from fedmarket.commitments import commit_model, round_circuit
from fedmarket.context import current_platform
from fedmarket.crypto import SealContext, seal
from fedmarket.datacheck import check_dataset, require_valid
from fedmarket.errors import ProtocolError
from fedmarket.fixed_point import quantize
from fedmarket.ml.data import Dataset
from fedmarket.ml.models import parameter_count
from fedmarket.ml.privacy import require_budget
from fedmarket.ml.training import train_local
from fedmarket.ml.updates import encode_update
from fedmarket.zk import (
    RoundLayout,
    build_market_round,
    build_settlement_circuit,
    check_round_verifiers,
    check_verifier,
    deployed_round_verifier_code,
    verifier_builds,
)
from fedmarket_schemas.market import TaskSpec
from fedmarket_schemas.trainer import DataValidationSummary, PrivacySpent, Registration
from fedmarket_tasks.common import once_task, remote_task


@once_task(task_run_name="check-local-data-{trainer}")
def check_local_data(trainer: str, data: Dataset, spec: TaskSpec) -> DataValidationSummary:
    summary = check_dataset(data.features, data.labels, spec.data_schema, dataset=f"trainer-{trainer}")
    require_valid(summary)
    return summary


@once_task(task_run_name="check-market")
def check_market(market: str, spec: TaskSpec) -> list[str]:
    """Before a trainer commits to a market: it is a clone of a genuine fedmarket factory's
    implementation (FEDMARKET_FACTORY_ADDRESS when set, else the factory that made it, whose
    implementation must be DataMarket's code), and each verifier it names is an adapter that
    factory deployed over the EZKL verifier of the task's own circuit, rebuilt here (the SRS is
    FEDMARKET_ZK_SRS_PATH's, as the owner's must be). Returns what was checked, one line each."""
    platform = current_platform()
    client = platform.market(market)
    factory = FactoryClient(platform.chain, platform.settings.factory_address or client.factory())
    if not factory.is_market(client.address) or client.factory() != factory.address:
        raise ProtocolError(f"market {client.address} was not created by factory {factory.address}")
    if platform.chain.code(factory.implementation()) != platform.chain.runtime_code_of("DataMarket"):
        raise ProtocolError(f"factory {factory.address} does not clone fedmarket's DataMarket")
    checked = [f"factory {factory.address}: fedmarket's DataMarket"]
    d = parameter_count(spec.model)
    for kind, adapter in (("round", client.round_verifier()), ("settlement", client.settlement_verifier())):
        if adapter is None:
            continue
        info = factory.verifier_info(adapter)
        if kind == "round":
            layout = RoundLayout.of_verifier(info.kind, info.chunks)
            circuit = build_market_round(layout, info.trainers, d, platform.settings)
            check_round_verifiers(circuit, deployed_round_verifier_code(platform.chain, adapter, split=layout.split))
            builds = verifier_builds(circuit)
        else:
            parts = spec.test_chunk_parts
            if spec.test_chunk_rows is None or (info.samples * info.chunks, info.chunks) != (
                spec.test_chunk_rows,
                parts,
            ):
                raise ProtocolError(
                    f"settlement verifier {adapter} is for {info.chunks} part(s) of {info.samples} test rows, the "
                    f"task's {parts} of {spec.test_chunk_rows} rows"
                )
            builds = [build_settlement_circuit(info.trainers, spec.model, info.samples, platform.settings)]
            check_verifier(builds[0], platform.chain.code(info.halo2))
        named = ", ".join(b.dir.name for b in builds)
        checked.append(f"{kind} verifier {adapter}: EZKL build {named} at {info.halo2}")
    return checked


@remote_task(task_run_name="register-{trainer}")
def register(market: str, trainer: str, summary: DataValidationSummary) -> Registration:
    platform = current_platform()
    party = platform.party(trainer)
    summary_cid = str(platform.store.put(summary.model_dump_json().encode()))
    m = platform.market(market)
    result = m.register(party.account, party.public_box_key, party.split_seed(m.address), summary_cid)
    return Registration(
        trainer=trainer,
        index=m.trainers().index(trainer),
        encryption_key="0x" + party.public_box_key.hex(),
        validation_cid=summary_cid,
        gas_used=result.gas_used,
        tx_hash=result.tx_hash,
    )


@remote_task(task_run_name="reveal-seed-{trainer}")
def reveal_seed(market: str, trainer: str) -> TxResult | None:
    """Reveal the split seed committed at registration; a rerun after it landed sends nothing."""
    platform = current_platform()
    party = platform.party(trainer)
    m = platform.market(market)
    if m.is_active(trainer):
        return None
    return m.reveal(party.account, party.split_seed(m.address))


def privacy_after(spec: TaskSpec, data: Dataset, trained_before: int) -> PrivacySpent | None:
    """In a DP-SGD task, what the trainer has spent once it trains one more round, having trained
    in `trained_before` rounds of this market (PrivacyBudgetError past the task's budget)."""
    return require_budget(spec.training, len(data.labels), trained_before + 1) if spec.training.dp else None


@once_task(task_run_name="train-r{round}-{trainer}")
def train(
    trainer: str, round: int, global_model: np.ndarray, data: Dataset, spec: TaskSpec, seed: int, trained_before: int
) -> np.ndarray:
    """Train the local model; in a DP-SGD task, only within the budget (`privacy_after`)."""
    privacy_after(spec, data, trained_before)
    return train_local(global_model, data, spec.model, spec.training, seed=seed)


@remote_task(task_run_name="seal-and-store-r{round}-{trainer}")
def seal_and_store(
    market: str, trainer: str, round: int, local_model: np.ndarray, spec: TaskSpec, privacy: PrivacySpent | None = None
) -> tuple[str, str]:
    """Returns (CID of the sealed update, commitment to the plaintext update). In a market whose
    rounds are proven the update is first rounded onto the circuits' 2^-8 grid. `privacy`: what
    the trainer has spent, reported in the update's header (DP-SGD tasks)."""
    platform = current_platform()
    party = platform.party(trainer)
    m = platform.market(market)
    circuit = round_circuit(m, spec.model, platform.settings)
    if circuit is not None:
        local_model = quantize(local_model)
    plaintext = encode_update(local_model, spec.model, privacy)
    context = SealContext(platform.chain.chain_id, m.address, round, trainer)
    envelope = seal(plaintext, sender=party.box_key, recipient=m.aggregator_key(), context=context)
    return str(platform.store.put(envelope)), commit_model(local_model, plaintext, circuit=circuit)
