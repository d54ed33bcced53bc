"""`fedmarket bench data`: the demo market on each data set (the shipped examples or a user's
file) against centralised training of the same model on the same pool.

Per data set: the market (`demo_flow`, 8 trainers, `malicious` of them attacking) and, as the
reference, one model
trained on all trainers' rows together with the same training settings for as many epochs as a
trainer trains in the whole market (rounds x local epochs). Both final models are scored on the
owner's whole held-out data, so the gap is the market's, not a difference of test sets."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from fedmarket.context import Platform, use_platform
from fedmarket.ml.data import owner_split
from fedmarket.ml.training import accuracy, initial_model, train_local
from fedmarket.ml.updates import decode_update
from fedmarket.settings import Settings
from fedmarket_flows.demo import DemoConfig, demo_data, demo_flow
from fedmarket_schemas.market import DataSchema, ModelKind, TaskSpec


class DataRow(BaseModel):
    data: str
    model: str
    malicious: int
    rounds: int
    batch_size: int
    learning_rate: float
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
    batch_size: int | None = None,
    learning_rate: float | None = None,
) -> list[DataRow]:
    rows = []
    for source in sources:
        config = DemoConfig(
            data=source,
            label_column=label_column,
            model=kind,
            malicious=malicious,
            rounds=rounds,
            batch_size=batch_size,
            learning_rate=learning_rate,
        )
        schema, dataset = demo_data(source, label_column)
        task = TaskSpec.for_data(schema or DataSchema(), kind).model_copy(update={"training": config.training()})
        pool, owner_data = owner_split(dataset, owner_fraction=config.owner_fraction, seed=config.seed)
        platform = Platform.from_settings(Settings(store_dir=store_dir / source.replace("/", "_")))
        with use_platform(platform):
            started = time.perf_counter()
            report = demo_flow(config)
            wall = time.perf_counter() - started
            final = decode_update(platform.store.get(report.rounds[-1].aggregate_cid), task.model)
        training = task.training.model_copy(update={"local_epochs": task.training.local_epochs * config.rounds})
        central = train_local(initial_model(task.model, seed=task.init_seed), pool, task.model, training, seed=0)
        market_acc = accuracy(final, owner_data, task.model)
        central_acc = accuracy(central, owner_data, task.model)
        rows.append(
            DataRow(
                data=source,
                model=kind.value,
                malicious=malicious,
                rounds=rounds,
                batch_size=task.training.batch_size,
                learning_rate=task.training.learning_rate,
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
