"""Every command given a bad option, file or setting answers with one line that names the
problem, exit status 2 for usage and 1 for what went wrong at run time, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from fedmarket_cli import app

runner = CliRunner()
ADDRESS = "0x" + "11" * 20
KEY = "0x" + "aa" * 32

BAD = [
    (["demo", "--model", "foo"], 2, "foo"),
    (["demo", "--model", "module:nowhere"], 2, "module:package.module:Class"),
    (["demo", "--trainers", "2"], 2, "trainers"),
    (["demo", "--split", "skewed"], 2, "skewed"),
    (["demo", "--attack", "noise,stall"], 2, "unknown attack stall"),
    (["demo", "--trainers", "4", "--malicious", "2"], 2, "honest majority"),
    (["demo", "--dp-epsilon", "0"], 2, "dp_epsilon"),
    (["bench", "gas", "--params", "655"], 2, "multiple of 10"),
    (["bench", "robustness", "--attacks", "teleport"], 2, "teleport"),
    (["bench", "gas", "--trainers", "0"], 2, "--trainers"),
    (["bench", "gas", "--trainers", "200"], 2, "128"),
    (["bench", "robustness", "--models", "cnn"], 2, "cnn"),
    (["bench", "contribution", "--methods", "banzhaf"], 2, "banzhaf"),
    (["bench", "zk", "--model", "cnn"], 2, "cnn"),
    (["bench", "zk", "--chunks", "400"], 2, "--chunks"),
    (["bench", "zk", "--test-rows", "100", "--settlement-parts", "3"], 2, "a divisor of it"),
    (["bench", "zk", "--chunks", "4", "--commitment", "polycommit"], 2, "polycommit chunks only with --layout"),
    (["bench", "aggregation", "--params", "ten"], 2, "--params"),
    (["zk", "prune", "--unused-days", "-1"], 2, "--unused-days"),
    (["data", "digits", "--out", "{tmp}", "--split", "skewed"], 2, "skewed"),
    (["keys", "new", "--out", "{tmp}/k.json", "--role", "x", "--bogus"], 2, "--bogus"),
    (["owner", "create", "--data", "{tmp}/missing", "--aggregator", ADDRESS, "--aggregator-key", KEY], 2, "--data"),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--round-inputs", "kzg"],
        2,
        "needs --prove-rounds",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--prove-rounds", "--prove-settlement-rows", "10", "--round-inputs", "kzg"],
        2,
        "reads Poseidon commitments",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--prove-rounds", "--round-inputs", "sha3"],
        2,
        "sha3",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--round-chunks", "4"],
        2,
        "needs --prove-rounds",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--prove-rounds", "--prove-settlement-rows", "10", "--round-chunks", "4"],
        2,
        "whole model's Poseidon hash",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--prove-rounds", "--round-chunks", "17"],
        2,
        "--round-chunks",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--settlement-parts", "2"],
        2,
        "needs --prove-settlement-rows",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY]
        + ["--prove-rounds", "--prove-settlement-rows", "10", "--settlement-parts", "3"],
        2,
        "a multiple of it",
    ),
    (["owner", "create", "--data", "{file}", "--aggregator", "0x12", "--aggregator-key", KEY], 2, "0x12"),
    (["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", "0x1"], 2, "0x1"),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY, "--model", "foo"],
        2,
        "foo",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY, "--trainers", "0"],
        2,
        "--trainers",
    ),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY, "--batch-size", "0"],
        2,
        "batch_size",
    ),
    (
        [
            "owner",
            "create",
            "--data",
            "{file}",
            "--aggregator",
            ADDRESS,
            "--aggregator-key",
            KEY,
            "--dp-noise-multiplier",
            "1",
        ],
        2,
        "--dp-epsilon-budget",
    ),
    (
        [
            *["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY],
            *["--dp-noise-multiplier", "1", "--dp-epsilon-budget", "4", "--dp-delta", "2"],
        ],
        2,
        "delta",
    ),
    (["demo", "--learning-rate", "-1"], 2, "learning_rate"),
    (["bench", "data", "--batch-size", "0"], 2, "batch_size"),
    (["bench", "data", "--seeds", "0,x"], 2, "--seeds"),
    (["demo", "--min-local-steps", "-1"], 2, "min_local_steps"),
    (["owner", "status", "--market", "0x12"], 2, "0x12"),
    (["owner", "status"], 2, "--market"),
    (["owner", "cancel", "--market", "market"], 2, "market"),
    (["owner", "withdraw", "--market", "0xzz"], 2, "0xzz"),
    (["trainer", "register", "--market", "0x12", "--data", "{file}"], 2, "0x12"),
    (["trainer", "run", "--market", ADDRESS, "--data", "{tmp}/missing"], 2, "--data"),
    (["data", "profile", "{tmp}/missing.csv"], 1, "missing.csv: no such file"),
    (["data", "split", "{file}", "--out", "{tmp}"], 1, "unknown format '.bin'"),
    (["data", "split", "digits", "--out", "{tmp}", "--schema", "{file}"], 2, "--schema"),
    (
        ["owner", "create", "--data", "{file}", "--aggregator", ADDRESS, "--aggregator-key", KEY, "--schema", "{file}"],
        2,
        "--schema",
    ),
    (["aggregator", "run", "--market", "0x12"], 2, "0x12"),
    (["aggregator", "prune", "--market", "0x12"], 2, "0x12"),
    (["aggregator", "prune", "--market", ADDRESS], 1, "ChainError"),  # no market there
    (["bench", "round", "--trainers", "200"], 2, "128"),
    (["bench", "dp", "--epsilons", "0,4"], 2, "--epsilons"),
    (["bench", "dp", "--epsilons", "four"], 2, "--epsilons"),
    (["bench", "round", "--params", "ten"], 2, "--params"),
    (["aggregator", "listen", "--market", "x", "--polls", "1"], 2, "x"),
    (["audit", "0x12"], 2, "0x12"),
    (["audit"], 2, "MARKET"),
    (["owner", "status", "--market", ADDRESS], 1, "ChainError"),  # no market there
    (["owner", "export", "--market", "0x12", "--onnx", "{tmp}/m.onnx"], 2, "0x12"),
    (["audit", ADDRESS], 1, "ChainError"),
    (["keys", "show"], 1, "FEDMARKET_KEY_FILE"),
    (["nonsense"], 2, "nonsense"),
]


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("args, status, named", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_option_is_one_line_naming_it(args, status, named, tmp_path):
    bad_file = tmp_path / "not-a-dataset.bin"
    bad_file.write_bytes(b"\x00" * 16)
    args = [a.format(tmp=tmp_path, file=bad_file) for a in args]
    result = runner.invoke(
        app, args, env={"FEDMARKET_KEY_FILE": "", "FEDMARKET_ETH_PRIVATE_KEY": ""}, terminal_width=200
    )
    assert result.exit_code == status, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert named in _one_line(result.output)


def test_a_bad_setting_is_named(tmp_path):
    result = runner.invoke(app, ["keys", "show"], env={"FEDMARKET_STORE_BACKEND": "s3"})
    assert result.exit_code == 1
    assert "FEDMARKET_STORE_BACKEND" in _one_line(result.output)


def test_a_failing_flow_prints_one_line_not_prefects_traceback(tmp_path):
    """A command that runs a flow: the run's failure reaches the Prefect API with its traceback,
    the console gets one line (a real process: Prefect's console handler writes to its stderr)."""
    bad_file = tmp_path / "not-a-dataset.bin"
    bad_file.write_bytes(b"\x00" * 16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEDMARKET_", "PREFECT_LOGGING"))}
    env |= {
        "FEDMARKET_ETH_PRIVATE_KEY": "0x" + "42" * 32,
        "FEDMARKET_STORE_DIR": str(tmp_path / "blocks"),
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's server, not an ephemeral one to start
    }
    args = ["owner", "create", "--data", str(bad_file), "--aggregator", ADDRESS, "--aggregator-key", KEY]
    done = subprocess.run(
        [sys.executable, "-c", "from fedmarket_cli import app; app()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert (
        "DataFormatError" in _one_line(done.stdout + done.stderr) and "not-a-dataset.bin" in done.stdout + done.stderr
    )


def _commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_shows_every_option_name_whole_at_80_columns():
    """No option name cut to fit the terminal (rich's tables cut `--aggregator-k…`)."""
    import typer.main

    for path, command in _commands(typer.main.get_command(app)):
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
        names = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")]
        missing = [name for name in names if name not in out.split()]
        assert not missing, f"fedmarket {' '.join(path)} --help cuts {missing}"
        assert max(map(len, out.splitlines())) <= 80, f"fedmarket {' '.join(path)} --help is wider than 80 columns"


def test_tables_in_a_pipe_keep_addresses_and_cids_whole(capsys):
    """Piped (not a terminal), a table keeps every cell whole: rich's 80 columns cut them."""
    from pydantic import BaseModel

    from fedmarket_cli._common import emit

    class Row(BaseModel):
        trainer: str
        cid: str
        score: float

    row = Row(trainer="0x" + "ab" * 20, cid="bafybei" + "q" * 52, score=0.123456)
    emit([row, row], False, "trainers", ["trainer", "cid", "score"])
    printed = capsys.readouterr().out
    assert row.trainer in printed and row.cid in printed and "0.1235" in printed
