"""`fedmarket data ...`: datasets as fedmarket stores them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedmarket_cli._common import SPLIT, print_json

app = typer.Typer(help="Datasets as fedmarket stores them (safetensors: features, labels).", no_args_is_help=True)


@app.command("digits")
def data_digits(
    out: Annotated[Path, typer.Option(help="directory for owner.safetensors and trainer-<i>.safetensors")],
    trainers: Annotated[int, typer.Option(min=1, help="number of trainer shares")] = 4,
    split: Annotated[str, typer.Option(**SPLIT, help="iid | dirichlet")] = "iid",
    seed: Annotated[int, typer.Option(help="seed of the splits")] = 0,
) -> None:
    """Split scikit-learn's handwritten digits into an owner's validation/test data and one
    private share per trainer, as files. Reads no settings."""
    from fedmarket.ml.data import encode_dataset, load_digits_dataset, owner_split, split_trainers

    pool, owner_data = owner_split(load_digits_dataset(), owner_fraction=0.3, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "owner.safetensors").write_bytes(encode_dataset(owner_data))
    paths = []
    for i, share in enumerate(split_trainers(pool, trainers, split=split, alpha=0.5, seed=seed)):
        paths.append(str(out / f"trainer-{i}.safetensors"))
        Path(paths[-1]).write_bytes(encode_dataset(share))
    print_json({"owner": str(out / "owner.safetensors"), "trainers": paths})
