"""`fedmarket data ...`: the users' own data files, profiled and split the way fedmarket reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedmarket_cli._common import INPUT_FILE, SPLIT, print_json, read_schema

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    help="Data files: CSV, Parquet, .npz, safetensors, folders of images per label, or a shipped example "
    "(digits, breast_cancer, wine).",
    no_args_is_help=True,
)

SOURCE = "a .csv, .parquet, .npz or .safetensors file, a folder with one subfolder of images per label, or digits | breast_cancer | wine"


@app.command("profile")
def data_profile(
    source: Annotated[str, typer.Argument(help=SOURCE)],
    label_column: Annotated[str, typer.Option(help="the column holding each row's label")] = "label",
    min_rows: Annotated[int, typer.Option(min=1, help="the fewest rows a party's data may have")] = 10,
) -> None:
    """Propose the task's data schema from an owner's file, as JSON to edit and pass to `fedmarket
    owner create --schema`: its feature columns, each one's observed range (the model scales
    inputs from it), its labels. Reads no settings."""
    from fedmarket.ml.formats import profile, read_table

    print_json(profile(read_table(source, label_column), min_rows=min_rows).model_dump(mode="json"))


@app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help=SOURCE)],
    out: Annotated[Path, typer.Option(help="directory for owner.safetensors, trainer-<i>.safetensors and schema.json")],
    label_column: Annotated[str, typer.Option(help="the column holding each row's label")] = "label",
    schema: Annotated[
        Path | None, typer.Option(**INPUT_FILE, help="data schema JSON; unset: profiled from the whole file")
    ] = None,
    trainers: Annotated[int, typer.Option(min=1, help="number of trainer shares")] = 4,
    split: Annotated[str, typer.Option(**SPLIT, help="iid | dirichlet")] = "iid",
    owner_fraction: Annotated[float, typer.Option(min=0.05, max=0.9, help="the owner's stratified share")] = 0.3,
    seed: Annotated[int, typer.Option(help="seed of the splits")] = 0,
) -> None:
    """Split a file into an owner's validation/test data and one private share per trainer (IID
    or Dirichlet(0.5) label skew), to try a market on it; writes the schema beside them."""
    split_files(source, out, label_column, read_schema(schema), trainers, split, owner_fraction, seed)


@app.command("digits")
def data_digits(
    out: Annotated[Path, typer.Option(help="directory for owner.safetensors and trainer-<i>.safetensors")],
    trainers: Annotated[int, typer.Option(min=1, help="number of trainer shares")] = 4,
    split: Annotated[str, typer.Option(**SPLIT, help="iid | dirichlet")] = "iid",
    seed: Annotated[int, typer.Option(help="seed of the splits")] = 0,
) -> None:
    """`fedmarket data split digits` under digits' own schema (intensities 0..16). Reads no settings."""
    from fedmarket_schemas.market import DataSchema

    split_files("digits", out, "label", DataSchema(), trainers, split, 0.3, seed)


def split_files(source, out: Path, label_column: str, schema, trainers: int, split: str, owner_fraction, seed) -> None:
    from fedmarket.ml.data import encode_dataset, owner_split, split_trainers
    from fedmarket.ml.formats import profile, read_table, to_dataset

    table = read_table(source, label_column, schema.feature_names if schema else None)
    schema = schema or profile(table)
    pool, owner_data = owner_split(to_dataset(table, schema), owner_fraction=owner_fraction, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "owner.safetensors").write_bytes(encode_dataset(owner_data))
    (out / "schema.json").write_text(schema.model_dump_json(indent=2))
    paths = []
    for i, share in enumerate(split_trainers(pool, trainers, split=split, alpha=0.5, seed=seed)):
        paths.append(str(out / f"trainer-{i}.safetensors"))
        Path(paths[-1]).write_bytes(encode_dataset(share))
    print_json({"owner": str(out / "owner.safetensors"), "trainers": paths, "schema": str(out / "schema.json")})
