"""The contracts as the Python package `fedmarket_contracts`: its data are the compiled artifacts
(ABI + bytecode, written by compile.js) and compile.js itself, which compiles EZKL's generated
verifiers; installed with the package, so no repository checkout is needed to find them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def artifacts_dir() -> Path:
    return Path(str(files(__name__) / "artifacts"))


def compile_script() -> Path:
    return Path(str(files(__name__) / "compile.js"))
