"""The aggregator's opened updates at rest: raw arrays and byte strings, sealed with AES-256-GCM
under the results key, one file each (byte strings named by digest, arrays by a random name) in
a directory per round key, written once.

A round's persisted results hold every update the aggregator opened, so they never touch the
disk in plaintext, and `remove` deletes a round's directory once the market is settled. Arrays
are stored raw (a float64 array whose values are all float32, as opened updates are, is stored
as float32 and restored exactly), in frames of `FRAME` bytes so that sealing and opening never
copy a whole array: `cryptography` has no streaming AEAD, so each frame is one AES-GCM message
whose associated data binds the file, the frame's position and whether it is the last. Files go
to the disk through two aligned buffers (one written while the next frame is sealed) and come
back through one, with O_DIRECT where the file system takes it (`_Sink`, `_Source`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import shutil
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedmarket.algorithms.linalg import fresh_array
from fedmarket.context import Platform
from fedmarket.errors import ConfigError, ResultsError

FRAME = 1 << 22  # bytes of plaintext per sealed frame
_TAG = 16  # AES-GCM tag bytes after each frame


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
        view = memoryview(data).cast("B")
        self._write(round_key, name, (view[i : i + FRAME] for i in range(0, max(len(view), 1), FRAME)), len(view))
        return name

    def get_bytes(self, round_key: str, name: str) -> bytes:
        out = bytearray(self._size(round_key, name))
        at = 0
        for frame in self._frames(round_key, name):
            out[at : at + len(frame)] = frame
            at += len(frame)
        return bytes(out)

    def put_array(self, round_key: str, array: np.ndarray) -> tuple[str, str]:
        """Store `array` raw in one pass; returns its name and the dtype it is stored in."""
        flat = np.ascontiguousarray(array).reshape(-1)
        name = os.urandom(20).hex()  # arrays are not deduplicated: hashing one would be a pass of its own
        if flat.dtype == np.float64:
            try:
                self._write(round_key, name, _frames_as(flat, np.float32, exact=True), flat.size * 4)
                return name, np.dtype(np.float32).str
            except _NotFloat32:
                pass
        self._write(round_key, name, _frames_as(flat, flat.dtype), flat.nbytes)
        return name, flat.dtype.str

    def get_array(self, round_key: str, name: str, stored: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        out = fresh_array(shape, np.dtype(dtype))
        flat, at, kind = out.reshape(-1), 0, np.dtype(stored)
        for frame in self._frames(round_key, name):
            part = np.frombuffer(frame, dtype=kind)
            if at + part.size > flat.size:
                at += part.size
                break
            flat[at : at + part.size] = part
            at += part.size
        if at != flat.size:
            held = at if at < flat.size else "more"
            raise ResultsError(f"sealed result {round_key}/{name} holds {held} values, expected {flat.size}")
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

    def _write(self, round_key: str, name: str, frames, total: int) -> None:
        """Seal `frames` (byte views of at most FRAME bytes, `total` bytes in all, at least one)
        into one file, each sealed in place in the sink's buffer: no fresh memory per frame."""
        path = self.root / round_key / name
        if path.exists():  # content-addressed bytes: written once
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, count, aead = os.urandom(8), _frame_count(total), AESGCM(self.key)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        try:
            with _Sink(partial, 4 + min(total, FRAME) + _TAG) as out:
                out.reserve(8)[:] = prefix
                for index, frame in enumerate(frames):
                    view = out.reserve(4 + len(frame) + _TAG)
                    struct.pack_into(">I", view, 0, len(frame) + _TAG)
                    aad = _aad(round_key, name, index, index == count - 1)
                    aead.encrypt_into(_nonce(prefix, index), frame, aad, view[4:])
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)

    def _size(self, round_key: str, name: str) -> int:
        """Plaintext bytes of a sealed file, from its frames' lengths (no frame is opened)."""
        total = 0
        with self._open(round_key, name) as f:
            f.seek(8)
            while header := f.read(4):
                (size,) = struct.unpack(">I", header)
                total += max(size - _TAG, 0)
                f.seek(size, os.SEEK_CUR)
        return total

    def _frames(self, round_key: str, name: str):
        """The opened frames of a sealed file, in order, each a view of one reused buffer (valid
        until the next is read); ResultsError where any does not open, or one is missing."""
        aead, index, plain = AESGCM(self.key), 0, bytearray(FRAME)
        with self._open(round_key, name) as f, _Source(f.fileno(), 4 + FRAME + _TAG) as source:
            total, prefix = os.fstat(f.fileno()).st_size, bytes(source.take(8))
            if total <= 8:
                raise ResultsError(f"sealed result {round_key}/{name} holds no frame: truncated")
            at = 8
            while at < total:
                header = source.take(4)
                size = struct.unpack(">I", header)[0] if len(header) == 4 else -1
                sealed = source.take(size) if _TAG <= size <= FRAME + _TAG else b""
                at += 4 + size
                out = memoryview(plain)[: max(size - _TAG, 0)]
                try:
                    if len(sealed) != size:
                        raise InvalidTag
                    aead.decrypt_into(_nonce(prefix, index), sealed, _aad(round_key, name, index, at >= total), out)
                except InvalidTag:
                    raise ResultsError(
                        f"sealed result {round_key}/{name} does not open: written under another results key, "
                        "truncated or altered"
                    ) from None
                yield out
                index += 1

    def _open(self, round_key: str, name: str):
        try:
            return open(self.root / round_key / name, "rb")
        except FileNotFoundError:
            raise ResultsError(f"sealed result {round_key}/{name} is missing (pruned?)") from None


class _Sink:
    """A new file written in order through two page-aligned buffers, in whole blocks with O_DIRECT
    where the file system takes it (the tail, and everywhere else, through the page cache). A
    sealed result is written once and read back at most once or twice, so it has no use for the
    page cache, whose growth on a VM with its RAM full of cache costs more than the disk. One
    buffer is written by a thread of its own while the caller seals the next frame into the
    other: the disk and the sealing overlap."""

    BLOCK = 4096  # what O_DIRECT aligns buffers, lengths and offsets to (any logical block size divides it)

    def __init__(self, path: Path, largest: int):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._direct = _set_direct(self._fd, True)
        self._buffers = [mmap.mmap(-1, largest + 2 * self.BLOCK) for _ in range(2)]  # page-aligned
        self._buffer, self._used = self._buffers[0], 0
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="vault-writer")
        self._pending: Future | None = None

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, kind, *_) -> None:
        try:
            self._wait()
            if kind is None:
                self._flush(whole=False)
        finally:
            self._writer.shutdown(wait=True)
            os.close(self._fd)  # the buffers go with the last views of them

    def reserve(self, size: int) -> memoryview:
        """The next `size` bytes of the file, to fill before the next call."""
        if self._used + size > len(self._buffer):
            self._flush(whole=True)
        start, self._used = self._used, self._used + size
        return memoryview(self._buffer)[start : self._used]

    def _flush(self, whole: bool) -> None:
        """Write the buffer: its whole blocks from the writer thread (the rest moves to the start
        of the other buffer, which the caller fills meanwhile), or all of it, now."""
        self._wait()  # the other buffer's write: done before the caller fills it again
        size = self._used - self._used % self.BLOCK if whole and self._direct else self._used
        if not whole:
            if self._direct and size % self.BLOCK:
                self._direct = _set_direct(self._fd, False)
            self._write(self._buffer, size)
            self._used = 0
            return
        full, self._buffer = self._buffer, self._buffers[self._buffers[0] is self._buffer]
        rest = self._used - size
        self._buffer[:rest] = full[size : self._used]
        self._used = rest
        self._pending = self._writer.submit(self._write, full, size)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # the write's error, if it had one

    def _write(self, buffer: mmap.mmap, size: int) -> None:
        with memoryview(buffer) as view:
            written = 0
            while written < size:
                try:
                    written += os.write(self._fd, view[written:size])
                except OSError as exc:  # a file system that takes the flag but not the writes
                    if not self._direct or exc.errno != errno.EINVAL:
                        raise
                    self._direct = _set_direct(self._fd, False)


class _Source:
    """A file read in order through one page-aligned buffer, in whole blocks with O_DIRECT where
    the file system takes it: the other half of _Sink, since a file it wrote is not in the page
    cache, and filling the cache costs as much as writing through it did."""

    BLOCK = _Sink.BLOCK

    def __init__(self, fd: int, largest: int):
        self._fd, self._direct = fd, _set_direct(fd, True)
        self._buffer = mmap.mmap(-1, largest + 3 * self.BLOCK)  # page-aligned
        self._start = self._end = 0  # the unread bytes: buffer[start:end]
        self._done = False

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *_) -> None:
        if self._direct:
            _set_direct(self._fd, False)

    def take(self, size: int) -> memoryview:
        """The next `size` bytes (fewer at the end of the file), valid until the next call."""
        if self._end - self._start < size:
            self._fill(size)
        start = self._start
        self._start += min(size, self._end - start)
        return memoryview(self._buffer)[start : self._start]

    def _fill(self, size: int) -> None:
        """Move the unread bytes to end on a block boundary, then read whole blocks after them
        until `size` bytes are unread or the file ends."""
        rest = self._end - self._start
        at = -rest % self.BLOCK
        self._buffer.move(at, self._start, rest)
        self._start, self._end = at, at + rest
        with memoryview(self._buffer) as view:
            while self._end - self._start < size and not self._done:
                room = (len(self._buffer) - self._end) // self.BLOCK * self.BLOCK
                try:
                    got = os.readv(self._fd, [view[self._end : self._end + room]])
                except OSError as exc:  # as in _Sink._flush
                    if not self._direct or exc.errno != errno.EINVAL:
                        raise
                    self._direct = _set_direct(self._fd, False)
                    continue
                self._done = got < room  # a short read: the end of the file
                self._end += got


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; whether it is on (off where the platform or the file
    system has none: tmpfs refuses it)."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct if on else flags & ~direct)
    except OSError:
        return False
    return on


class _NotFloat32(Exception):
    """A float64 array holds a value float32 cannot: it is stored as float64 instead."""


def _frames_as(flat: np.ndarray, dtype, exact: bool = False):
    """`flat` as `dtype`, in byte views of FRAME bytes, one at a time through one reused buffer
    (valid until the next is made); with `exact`, _NotFloat32 on any value the cast changes."""
    dtype = np.dtype(dtype)
    step = max(FRAME // dtype.itemsize, 1)
    if dtype == flat.dtype:
        for i in range(0, max(flat.size, 1), step):
            yield memoryview(flat[i : i + step]).cast("B")
        return
    narrow = np.empty(min(step, flat.size), dtype)
    wide = np.empty(narrow.size, flat.dtype) if exact else None
    for i in range(0, max(flat.size, 1), step):
        part = flat[i : i + step]
        out = narrow[: part.size]
        out[...] = part
        if wide is not None:
            back = wide[: part.size]
            back[...] = out
            if not np.array_equal(back, part):
                raise _NotFloat32
        yield memoryview(out).cast("B")


def _frame_count(total: int) -> int:
    return max(-(-total // FRAME), 1)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(round_key: str, name: str, index: int, last: bool) -> bytes:
    return f"fedmarket/results/{round_key}/{name}/{index}/{int(last)}".encode()
