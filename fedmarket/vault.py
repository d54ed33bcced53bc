"""The aggregator's opened updates at rest: raw arrays and byte strings, sealed with AES-256-GCM
under the results key, one file each (byte strings named by digest, arrays by a random name) in
a directory per round key, written once.

A round's persisted results hold every update the aggregator opened, so they never touch the
disk in plaintext, and `remove` deletes a round's directory once the market is settled. Arrays
are stored raw (a float64 array whose values are all float32, as opened updates are, is stored
as float32 and restored exactly), in frames of `FRAME` bytes so that sealing and opening never
copy a whole array: `cryptography` has no streaming AEAD, so each frame is one AES-GCM message
whose associated data binds the file, the frame's position and whether it is the last.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedmarket.context import Platform
from fedmarket.errors import ConfigError, ResultsError

FRAME = 1 << 22  # bytes of plaintext per sealed frame


def results_key(platform: Platform) -> bytes:
    """FEDMARKET_RESULTS_KEY; unset: a random key made once and kept 0600 in the state directory
    (not derived from a party's key: every process that runs a market's steps, whichever keys it
    holds, must open the same results)."""
    settings = platform.settings
    if settings.results_key is not None:
        try:
            key = bytes.fromhex(settings.results_key.get_secret_value().removeprefix("0x"))
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError("FEDMARKET_RESULTS_KEY must be 32 bytes of hex (64 hex digits)")
        return key
    path = settings.state_dir / "results.key"
    if not path.exists():  # made whole, then linked into place: a racing process sees all or none of it
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"results.key.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"{path} does not hold a 32-byte results key")
    return key


@dataclass(frozen=True)
class Vault:
    root: Path
    key: bytes

    @classmethod
    def of(cls, platform: Platform) -> Vault:
        return cls(platform.settings.results_dir, results_key(platform))

    def put_bytes(self, round_key: str, data: bytes | memoryview) -> str:
        name = hashlib.sha256(data).hexdigest()[:40]
        self._write(round_key, name, [memoryview(data).cast("B")])
        return name

    def get_bytes(self, round_key: str, name: str) -> bytes:
        return b"".join(self._frames(round_key, name))

    def put_array(self, round_key: str, array: np.ndarray) -> tuple[str, str]:
        """Store `array` raw in one pass; returns its name and the dtype it is stored in."""
        flat = np.ascontiguousarray(array).reshape(-1)
        name = os.urandom(20).hex()  # arrays are not deduplicated: hashing one would be a pass of its own
        if flat.dtype == np.float64:
            try:
                self._write(round_key, name, _frames_as(flat, np.dtype(np.float32), exact=True))
                return name, np.dtype(np.float32).str
            except _NotFloat32:
                pass
        self._write(round_key, name, _frames_as(flat, flat.dtype))
        return name, flat.dtype.str

    def get_array(self, round_key: str, name: str, stored: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, dtype=np.dtype(dtype))
        flat, at = out.reshape(-1), 0
        for frame in self._frames(round_key, name):
            part = np.frombuffer(frame, dtype=np.dtype(stored))
            flat[at : at + part.size] = part
            at += part.size
        if at != flat.size:
            raise ResultsError(f"sealed result {round_key}/{name} holds {at} values, expected {flat.size}")
        return out

    def remove(self, round_key: str) -> tuple[int, int]:
        """Delete a round's sealed results; returns (files, bytes) removed."""
        folder = self.root / round_key
        if not folder.is_dir():
            return 0, 0
        files = [p for p in folder.iterdir() if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        shutil.rmtree(folder)
        return len(files), size

    def _write(self, round_key: str, name: str, chunks) -> None:
        path = self.root / round_key / name
        if path.exists():  # content-addressed bytes: written once
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = os.urandom(8)
        aead = AESGCM(self.key)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        try:
            with open(partial, "wb") as out:
                out.write(prefix)
                for index, (frame, last) in enumerate(_frames_of(chunks)):
                    sealed = aead.encrypt(_nonce(prefix, index), bytes(frame), _aad(round_key, name, index, last))
                    out.write(struct.pack(">I", len(sealed)))
                    out.write(sealed)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)

    def _frames(self, round_key: str, name: str):
        path = self.root / round_key / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ResultsError(f"sealed result {round_key}/{name} is missing (pruned?)") from None
        aead, prefix, at, index = AESGCM(self.key), data[:8], 8, 0
        while at < len(data):
            (size,) = struct.unpack_from(">I", data, at)
            sealed = memoryview(data)[at + 4 : at + 4 + size]
            at += 4 + size
            try:
                yield aead.decrypt(_nonce(prefix, index), sealed, _aad(round_key, name, index, at >= len(data)))
            except InvalidTag:
                raise ResultsError(
                    f"sealed result {round_key}/{name} does not open: written under another results key, "
                    "truncated or altered"
                ) from None
            index += 1


class _NotFloat32(Exception):
    """A float64 array holds a value float32 cannot: it is stored as float64 instead."""


def _frames_as(flat: np.ndarray, dtype: np.dtype, exact: bool = False):
    """`flat` converted to `dtype` one frame at a time; with `exact`, _NotFloat32 on any change."""
    step = max(FRAME // dtype.itemsize, 1)
    for i in range(0, flat.size, step):
        part = flat[i : i + step]
        converted = part.astype(dtype, copy=False)
        if exact and not np.array_equal(converted, part):
            raise _NotFloat32
        yield memoryview(converted).cast("B")


def _frames_of(chunks):
    """Re-cut byte views into frames of at most FRAME bytes, each with whether it is the last;
    at least one frame, possibly empty."""
    previous = None
    for chunk in chunks:
        for i in range(0, len(chunk), FRAME):
            if previous is not None:
                yield previous, False
            previous = chunk[i : i + FRAME]
    yield (previous if previous is not None else b""), True


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(round_key: str, name: str, index: int, last: bool) -> bytes:
    return f"fedmarket/results/{round_key}/{name}/{index}/{int(last)}".encode()
