"""The `fedmarket` command line: one module per command group (as Prefect's cli/), assembled here.

Every fedmarket error a command raises is one line on stderr and exit status 1; a bad option is
one line naming it and exit status 2. Command bodies import what they run when they run, so
`--help` and a mistyped option answer without loading torch, Prefect and web3.
"""

from __future__ import annotations

import os
import sys

import typer
from pydantic import ValidationError
from typer import TyperException
from typer.core import TyperGroup

from fedmarket.errors import FedMarketError
from fedmarket_cli import aggregator, audit, bench, data, demo, keys, owner, trainer, zk
from fedmarket_cli._common import err, problems, usage_error


class _Commands(TyperGroup):
    """Errors as one line each: a fedmarket error exits 1, a bad option, file or value 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FedMarketError as exc:
            err.print(f"[red]{type(exc).__name__}:[/red] {exc}", soft_wrap=True, markup=True, highlight=False)
            raise typer.Exit(1) from None
        except ValidationError as exc:  # options that make an invalid spec (pydantic's own check)
            raise usage_error("options", problems(exc)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.Abort:
            err.print("aborted")
            code = 1
        except TyperException as exc:  # a usage error (typer's click): its message on one line
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # the help itself
            else:
                context = getattr(exc, "ctx", None)
                where = f" (see {context.command_path} --help)" if context is not None else ""
                err.print(f"[red]error:[/red] {exc.format_message()}{where}", soft_wrap=True, highlight=False)
            code = getattr(exc, "exit_code", 2)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich cuts option names to fit 80 columns
    cls=_Commands,
    help="fedmarket: a verifiable data market for federated learning on Ethereum, run by Prefect.\n\n"
    "Settings are environment variables prefixed FEDMARKET_ (see README): FEDMARKET_CHAIN_RPC_URL "
    "selects a node instead of the in-process EVM, FEDMARKET_STORE_BACKEND=kubo and "
    "FEDMARKET_KUBO_API_URL a Kubo node instead of the embedded blockstore.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _quiet_prefect() -> None:
    """fedmarket command line."""
    # the runs' logs still reach the Prefect API (and its UI); the console shows this CLI's own
    # lines, errors included, one each
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


app.command("demo")(demo.demo)
app.command("audit")(audit.audit)
for _name, _group in (
    ("bench", bench),
    ("zk", zk),
    ("keys", keys),
    ("data", data),
    ("owner", owner),
    ("trainer", trainer),
    ("aggregator", aggregator),
):
    app.add_typer(_group.app, name=_name)


def main() -> None:
    app()
