"""The aggregator's persisted round results: sealed at rest, the bulk stored once as raw arrays,
loaded back exactly on a rerun, refused when altered, and pruned."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

import numpy as np
import pytest
from prefect import flow
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from pydantic import SecretStr

import fedmarket.vault as vault_module
from fedmarket.errors import ConfigError, ResultsError
from fedmarket.vault import Vault, results_key
from fedmarket_schemas.rounds import ExclusionReason, LocalModels, Rejection
from fedmarket_tasks.cache import round_step
from fedmarket_tasks.sealed import prune

KEY = bytes(range(32))


def opened_like(rows: int, dim: int, seed: int) -> np.ndarray:
    """float64 rows holding float32 values, as decoded updates do."""
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32).astype(np.float64)


@pytest.fixture(params=["direct", "page cache"])
def sink(request, monkeypatch):
    """Results written with O_DIRECT where the file system takes it, and through the page cache."""
    real, used = vault_module._set_direct, []
    if request.param == "direct":
        monkeypatch.setattr(vault_module, "_set_direct", lambda fd, on: used.append(real(fd, on)) or used[-1])
    else:
        monkeypatch.setattr(vault_module, "_set_direct", lambda fd, on: False)
    return used


def _takes_direct(folder) -> bool:
    try:
        os.close(os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0)))
    except OSError:
        return False
    return hasattr(os, "O_DIRECT")


def test_arrays_and_bytes_round_trip_over_many_frames(tmp_path, monkeypatch, sink):
    monkeypatch.setattr(vault_module, "FRAME", 1000)
    vault = Vault(tmp_path, KEY)
    updates, mean = opened_like(3, 1001, 0), np.random.default_rng(1).normal(size=777)
    name, stored = vault.put_array("r1", updates)
    assert stored == "<f4" and (tmp_path / "r1" / name).stat().st_size < updates.nbytes / 2 + 1000
    back = vault.get_array("r1", name, stored, "<f8", updates.shape)
    assert back.dtype == np.float64 and np.array_equal(back, updates)
    name, stored = vault.put_array("r1", mean)  # not float32 values: kept as float64
    assert stored == "<f8" and np.array_equal(vault.get_array("r1", name, stored, "<f8", mean.shape), mean)
    for blob in (os.urandom(5000), os.urandom(3000), b""):  # a short last frame, whole frames, none
        assert vault.get_bytes("r1", vault.put_bytes("r1", blob)) == blob
    name, stored = vault.put_array("r1", np.zeros((0, 4)))
    assert vault.get_array("r1", name, stored, "<f8", (0, 4)).shape == (0, 4)
    if sink and _takes_direct(tmp_path):
        assert True in sink and False in sink  # whole blocks went out direct, the tails not


def test_an_altered_truncated_or_foreign_result_does_not_open(tmp_path, monkeypatch, sink):
    monkeypatch.setattr(vault_module, "FRAME", 1000)
    blob = os.urandom(3500)  # four frames
    name = Vault(tmp_path, KEY).put_bytes("r1", blob)
    path = tmp_path / "r1" / name
    sealed = path.read_bytes()
    assert blob not in sealed and blob[:64] not in sealed
    with pytest.raises(ResultsError, match="another results key"):
        Vault(tmp_path, bytes(32)).get_bytes("r1", name)
    flipped = sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:]
    for damaged in (flipped, sealed[: len(sealed) - 1004], sealed[: len(sealed) - 10]):  # a frame short
        path.write_bytes(damaged)
        with pytest.raises(ResultsError, match=f"r1/{name} does not open"):
            Vault(tmp_path, KEY).get_bytes("r1", name)
    path.write_bytes(sealed[:8])
    with pytest.raises(ResultsError, match="holds no frame"):
        Vault(tmp_path, KEY).get_bytes("r1", name)
    path.unlink()
    with pytest.raises(ResultsError, match="missing"):
        Vault(tmp_path, KEY).get_bytes("r1", name)


def test_the_results_key_is_the_settings_or_one_kept_private(platform):
    key = results_key(platform)
    path = platform.settings.state_dir / "results.key"
    assert len(key) == 32 and path.read_bytes() == key and results_key(platform) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    platform.settings.results_key = SecretStr(KEY.hex())
    assert results_key(platform) == KEY
    platform.settings.results_key = SecretStr("0x1234")
    with pytest.raises(ConfigError, match="FEDMARKET_RESULTS_KEY must be 32 bytes"):
        results_key(platform)


calls = []


@round_step(task_run_name="opened-r{round}")
def opened_step(round: int, *, key: str) -> LocalModels:
    calls.append(round)
    rejected = {"0xdead": Rejection(reason=ExclusionReason.DOES_NOT_OPEN, detail="bad tag", key="0x" + "ab" * 32)}
    return LocalModels(
        round=round, trainers=["0xa", "0xb"], indices=[0, 2], matrix=opened_like(2, 20_000, round), rejected=rejected
    )


@flow
def run_step(round: int, key: str) -> LocalModels:
    return opened_step(round, key=key)


def test_a_round_step_stores_its_updates_once_sealed_and_a_rerun_reads_them_back(platform):
    key = os.urandom(8).hex()
    first = run_step(1, key)
    again = run_step(1, key)
    assert calls.count(1) == 1  # the rerun read the persisted result
    assert np.array_equal(again.matrix, first.matrix) and again.matrix.dtype == np.float64
    assert again.trainers == first.trainers and again.rejected == first.rejected

    stored = [p for p in platform.settings.results_dir.rglob("*") if p.is_file()]
    records = [p for p in PREFECT_LOCAL_STORAGE_PATH.value().glob(f"*-{key}") if p.is_file()]
    assert len(records) == 1 and records[0].stat().st_size < 2000  # Prefect's record: a reference
    disk = sum(p.stat().st_size for p in stored)
    assert first.matrix.nbytes / 2 <= disk < first.matrix.nbytes / 2 + 10_000  # once, as float32
    secrets = [first.matrix[0, :64].astype(np.float32).tobytes(), first.matrix[1, :64].tobytes(), b"ab" * 32]
    for path in [*stored, *records]:
        content = path.read_bytes()
        assert not any(s in content for s in secrets), path  # no update, no evidence key in the clear

    record_size = records[0].stat().st_size
    assert prune([key]) == (len(stored) + 1, disk + record_size)
    assert not (platform.settings.results_dir / key).exists() and not records[0].exists()
    assert np.array_equal(run_step(1, key).matrix, first.matrix) and calls.count(1) == 2  # pruned: recomputed


def test_a_file_system_that_takes_o_direct_but_refuses_its_io_is_written_through_the_cache(tmp_path, monkeypatch):
    """Some file systems accept the flag and then refuse aligned reads and writes (EINVAL): the
    vault turns the flag off and carries on."""
    if not _takes_direct(tmp_path):
        pytest.skip("this file system refuses O_DIRECT when opened: the other path")
    refused = []

    def refusing(real):
        def call(fd, *args):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                refused.append(real.__name__)
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, *args)

        return call

    monkeypatch.setattr(vault_module.os, "write", refusing(os.write))
    monkeypatch.setattr(vault_module.os, "readv", refusing(os.readv))
    monkeypatch.setattr(vault_module, "FRAME", 1000)
    vault, blob = Vault(tmp_path, KEY), os.urandom(20_000)
    assert vault.get_bytes("r1", vault.put_bytes("r1", blob)) == blob
    assert refused == ["write", "readv"]


def test_a_write_that_fails_in_the_writer_thread_fails_the_put_and_leaves_no_file(tmp_path, monkeypatch):
    """Frames are written by a thread of their own while the next is sealed: a disk that fills
    up there fails the put itself, and no partial file is left to be read as a result."""
    writes, real = [], os.write

    def filling(fd, data):
        writes.append(len(data))
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(vault_module.os, "write", filling)
    monkeypatch.setattr(vault_module, "FRAME", 4096)
    vault = Vault(tmp_path, KEY)
    with pytest.raises(OSError, match="No space left"):
        vault.put_array("r1", np.arange(20_000, dtype=np.float64))
    assert len(writes) == 3 and list((tmp_path / "r1").iterdir()) == []
    monkeypatch.setattr(vault_module.os, "write", real)  # the disk has room again: nothing stale in the way
    name, stored = vault.put_array("r1", np.arange(20_000, dtype=np.float64))
    assert np.array_equal(vault.get_array("r1", name, stored, "<f8", (20_000,)), np.arange(20_000, dtype=np.float64))
