"""`fedmarket bench data`: the demo market on each data set (the shipped examples or a user's
file) against centralised training of the same model on the same pool.

Per data set and seed: the market (`demo_flow`, 8 trainers, `malicious` of them attacking) and,
as the reference, one model trained on all trainers' rows together with the same training
settings for as many epochs as the longest-training trainer trains in the whole market (rounds x
its epochs a round). Both final models are scored on the owner's whole held-out data, so the gap
is the market's, not a difference of test sets. The seed draws the owner's split and the shares:
on a small table one held-out row is most of a point, so a gap is read over several seeds."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from fedmarket.context import Platform, use_platform
from fedmarket.ml.data import owner_split, split_trainers
from fedmarket.ml.training import accuracy, initial_model, train_local
from fedmarket.ml.updates import decode_update
from fedmarket.settings import Settings
from fedmarket_flows.demo import DemoConfig, demo_data, demo_flow
from fedmarket_schemas.market import DataSchema, ModelKind, TaskSpec


class DataRow(BaseModel):
    data: str
    seed: int
    model: str
    malicious: int
    rounds: int
    batch_size: int
    learning_rate: float
    local_epochs: int
    rows: int
    features: int
    classes: int
    market_accuracy: float
    centralised_accuracy: float
    gap_points: float
    demo_wall_s: float


def run(
    sources: list[str],
    kind: ModelKind,
    label_column: str,
    malicious: int,
    store_dir: Path,
    *,
    rounds: int = 5,
    seeds: tuple[int, ...] = (0,),
    batch_size: int | None = None,
    learning_rate: float | None = None,
    min_local_steps: int | None = None,
) -> list[DataRow]:
    rows = []
    for source, seed in ((source, seed) for source in sources for seed in seeds):
        config = DemoConfig(
            data=source,
            label_column=label_column,
            model=kind,
            malicious=malicious,
            rounds=rounds,
            seed=seed,
            batch_size=batch_size,
            learning_rate=learning_rate,
            min_local_steps=min_local_steps,
        )
        schema, dataset = demo_data(source, label_column)
        task = TaskSpec.for_data(schema or DataSchema(), kind).model_copy(update={"training": config.training()})
        pool, owner_data = owner_split(dataset, owner_fraction=config.owner_fraction, seed=config.seed)
        shares = split_trainers(pool, config.trainers, split=config.split, alpha=config.dirichlet_alpha, seed=seed)
        epochs = max(task.training.epochs_for(len(share)) for share in shares)
        platform = Platform.from_settings(Settings(store_dir=store_dir / f"{source.replace('/', '_')}-{seed}"))
        with use_platform(platform):
            started = time.perf_counter()
            report = demo_flow(config)
            wall = time.perf_counter() - started
            final = decode_update(platform.store.get(report.rounds[-1].aggregate_cid), task.model)
        training = task.training.model_copy(update={"local_epochs": epochs * config.rounds})
        central = train_local(initial_model(task.model, seed=task.init_seed), pool, task.model, training, seed=0)
        market_acc = accuracy(final, owner_data, task.model)
        central_acc = accuracy(central, owner_data, task.model)
        rows.append(
            DataRow(
                data=source,
                seed=seed,
                model=kind.value,
                malicious=malicious,
                rounds=rounds,
                batch_size=task.training.batch_size,
                learning_rate=task.training.learning_rate,
                local_epochs=epochs,
                rows=len(dataset),
                features=task.model.in_features,
                classes=task.model.classes,
                market_accuracy=round(market_acc, 4),
                centralised_accuracy=round(central_acc, 4),
                gap_points=round(100 * (central_acc - market_acc), 2),
                demo_wall_s=round(wall, 1),
            )
        )
    return rows
