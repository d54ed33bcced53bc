"""How round steps persist their results: sealed, and with the bulk stored once as raw arrays.

Prefect's default serializer pickles a result, base64-encodes it and wraps it in JSON: the
round's opened updates, copied several times over, in plaintext, on the aggregator's disk.
`SealedSerializer` instead moves every large array or byte string out of the pickle into the
vault (fedmarket/vault.py: raw, AES-GCM sealed, under the step's round key) and puts the small
remainder there too, so Prefect's record is only a reference to it. The remainder is a stdlib
pickle of the project's own types: it is authenticated under the results key before anything is
unpickled.
"""

from __future__ import annotations

import base64
import io
import pickle
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect.context import TaskRunContext
from prefect.serializers import Serializer
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

from fedmarket.context import current_platform
from fedmarket.errors import ConfigError
from fedmarket.vault import Vault

EXTERNAL = 1 << 16  # arrays and byte strings of at least this many bytes go to the vault


class SealedSerializer(Serializer):
    type: Literal["fedmarket-sealed"] = "fedmarket-sealed"

    def dumps(self, obj: Any) -> bytes:
        context = TaskRunContext.get()
        round_key = context.parameters.get("key") if context is not None else None
        if not round_key:
            raise ConfigError("a sealed result is written only by a round step with its key= (tasks/cache.py)")
        vault = Vault.of(current_platform())
        buffer = io.BytesIO()
        _Pickler(buffer, vault, round_key).dump(obj)
        name = vault.put_bytes(round_key, buffer.getbuffer())
        return base64.b64encode(f"{round_key}/{name}".encode())

    def loads(self, blob: bytes) -> Any:
        round_key, name = base64.b64decode(blob).decode().split("/")
        vault = Vault.of(current_platform())
        return _Unpickler(io.BytesIO(vault.get_bytes(round_key, name)), vault).load()


class _Pickler(pickle.Pickler):
    def __init__(self, file, vault: Vault, round_key: str):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.vault, self.round_key = vault, round_key

    def persistent_id(self, obj: Any):
        if type(obj) is np.ndarray and obj.nbytes >= EXTERNAL and obj.dtype.kind in "biuf":
            name, stored = self.vault.put_array(self.round_key, obj)
            return ("array", self.round_key, name, stored, obj.dtype.str, obj.shape)
        if type(obj) is bytes and len(obj) >= EXTERNAL:
            return ("bytes", self.round_key, self.vault.put_bytes(self.round_key, obj))
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, vault: Vault):
        super().__init__(file)
        self.vault = vault

    def persistent_load(self, pid):
        kind, *where = pid
        if kind == "array":
            return self.vault.get_array(*where)
        if kind == "bytes":
            return self.vault.get_bytes(*where)
        raise pickle.UnpicklingError(f"unknown sealed reference {kind!r}")


def prune(round_keys: list[str]) -> tuple[int, int]:
    """Delete the sealed results and Prefect's records of the rounds with these keys (the
    settlement step's key extends its last round's); returns (files, bytes) removed."""
    vault = Vault.of(current_platform())
    files = size = 0
    records = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    for key in round_keys:
        for folder in sorted(vault.root.glob(f"{key}*")):
            n, b = vault.remove(folder.name)
            files, size = files + n, size + b
        for record in sorted(records.glob(f"*-{key}*")) if records.is_dir() else []:
            if record.is_file():
                files, size = files + 1, size + record.stat().st_size
                record.unlink()
            elif record.is_dir():
                shutil.rmtree(record)
    return files, size
