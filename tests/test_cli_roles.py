"""The parties' commands: keys never on the command line, key files guarded, clear errors, and
`--help` on every command naming the settings it reads."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from fedmarket.errors import ConfigError
from fedmarket.identity import read_key_file
from fedmarket_cli import app

runner = CliRunner()
COMMANDS = [
    ["owner", "create"],
    ["owner", "status"],
    ["owner", "cancel"],
    ["owner", "withdraw"],
    ["trainer", "register"],
    ["trainer", "run"],
    ["aggregator", "run"],
    ["aggregator", "listen"],
    ["keys", "new"],
    ["keys", "show"],
    ["data", "digits"],
    ["zk", "cache"],
    ["zk", "prune"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_says_what_and_which_settings(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Reads" in text
    if command[0] in ("owner", "trainer", "aggregator") and command[1] != "status":
        assert "FEDMARKET_KEY_FILE" in text
    assert "private-key" not in text and "--key " not in text  # no option takes a key


def test_key_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "k.json"
    made = runner.invoke(app, ["keys", "new", "--out", str(path), "--role", "trainer"])
    assert made.exit_code == 0
    public = json.loads(made.stdout)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert read_key_file(path).address == public["address"]
    again = runner.invoke(app, ["keys", "new", "--out", str(path)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    shown = runner.invoke(app, ["keys", "show"], env={"FEDMARKET_KEY_FILE": str(path)})
    assert json.loads(shown.stdout) == {k: public[k] for k in ("address", "box_public_key")}

    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        read_key_file(path)
    shown = runner.invoke(app, ["keys", "show"], env={"FEDMARKET_KEY_FILE": str(path)})
    assert shown.exit_code == 1 and "chmod 600" in shown.output


def test_a_bad_key_is_named_without_echoing_it(tmp_path):
    secret = "0x" + "zz" * 32
    shown = runner.invoke(app, ["keys", "show"], env={"FEDMARKET_ETH_PRIVATE_KEY": secret, "FEDMARKET_KEY_FILE": ""})
    assert shown.exit_code == 1 and "invalid party key" in shown.output and "zz" not in shown.output


def test_owner_needs_a_key_and_says_so(tmp_path):
    files = json.loads(runner.invoke(app, ["data", "digits", "--out", str(tmp_path), "--trainers", "2"]).stdout)
    result = runner.invoke(
        app,
        [
            "owner",
            "create",
            "--data",
            files["owner"],
            "--aggregator",
            "0x" + "11" * 20,
            "--aggregator-key",
            "0x" + "22" * 32,
        ],
        env={"FEDMARKET_KEY_FILE": "", "FEDMARKET_ETH_PRIVATE_KEY": ""},
    )
    assert result.exit_code == 1 and "ConfigError" in result.output and "FEDMARKET_KEY_FILE" in result.output
