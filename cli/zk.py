"""`fedmarket zk ...`: the EZKL build cache."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from fedmarket_cli._common import emit, stdout_console

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    help="The EZKL build cache (FEDMARKET_ZK_CACHE_DIR): one build per circuit hash, each with its proving key.",
    no_args_is_help=True,
)


def _builds_out(builds: list, as_json: bool, title: str) -> None:
    if as_json:
        emit(builds, True, "", [])
        return
    table = Table(title=title)
    for col in ("build", "GB", "proving key GB", "last used (UTC)", "complete"):
        table.add_column(col)
    for b in builds:
        used = time.strftime("%Y-%m-%d %H:%M", time.gmtime(b.last_used))
        key = f"{b.pk_bytes / 1e9:.2f}" if b.pk_bytes else "pruned" if b.complete else "-"
        table.add_row(b.name, f"{b.bytes / 1e9:.2f}", key, used, "yes" if b.complete else "no (setup died or running)")
    stdout_console().print(table)


@app.command("cache")
def zk_cache(
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"rows": [{name, bytes, pk_bytes, last_used, complete}]}')
    ] = False,
) -> None:
    """List the circuit builds, least recently used first, with their size on disk. Reads
    FEDMARKET_ZK_CACHE_DIR."""
    from fedmarket.settings import load_settings
    from fedmarket.zk import cached_builds

    builds = cached_builds(load_settings().zk_cache_dir)
    _builds_out(builds, as_json, f"{len(builds)} builds, {sum(b.bytes for b in builds) / 1e9:.2f} GB")


@app.command("prune")
def zk_prune(
    unused_days: Annotated[float, typer.Option(min=0, help="prune builds no prover has used for this many days")] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go, remove nothing")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"rows": [...]} of the builds pruned, as they were')
    ] = False,
) -> None:
    """Remove the proving keys of circuit builds unused for --unused-days (the rest of a build,
    1 to 4 MB at full size, stays), and setups that died part way. The next proof of a pruned
    circuit sets it up again from what stayed, with the same verifying key, so markets whose
    verifiers were deployed for it go on. Reads FEDMARKET_ZK_CACHE_DIR."""
    from fedmarket.settings import load_settings
    from fedmarket.zk import prune

    removed = prune(load_settings().zk_cache_dir, unused_days, dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    _builds_out(
        removed, as_json, f"{verb} {sum(b.prunable_bytes for b in removed) / 1e9:.2f} GB from {len(removed)} builds"
    )
