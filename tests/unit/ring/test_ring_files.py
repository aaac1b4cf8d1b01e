"""Ring segments and doorbells are never adopted when planted, and never SIGBUS when full."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import unique_name

from pipeline.errors import OperationalError
from pipeline.private_file import NoSpaceError
from pipeline.records import TICK_DTYPE
from pipeline.ring import (
    RingReader,
    RingSpec,
    RingWriter,
    check_space,
    inspect_segment,
    segment_size,
)
from pipeline.wakeup import BellRinger, Doorbell, bell_path

ENV = "test"


def _spec(capacity: int = 8) -> RingSpec:
    return RingSpec(unique_name("ticks"), TICK_DTYPE, capacity, lossless=False,
                    readers=("strategy",))


def _writer(spec: RingSpec, shm_dir: Path) -> RingWriter:
    return RingWriter(spec, env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir, open_timeout_s=0.2)


def _reader(spec: RingSpec, shm_dir: Path) -> RingReader:
    return RingReader(spec, "strategy", env=ENV, run_id=uuid.uuid4(), shm_dir=shm_dir,
                      open_timeout_s=0.2)


def test_a_new_segment_is_private_and_fully_reserved(shm_dir: Path) -> None:
    spec = _spec(1024)
    writer = _writer(spec, shm_dir)
    info = os.stat(shm_dir / spec.name)
    assert info.st_mode & 0o777 == 0o600
    assert info.st_size == segment_size(spec)
    assert info.st_blocks * 512 >= segment_size(spec)  # memory taken now, not on first write
    assert inspect_segment(shm_dir / spec.name) is not None
    writer.close()


@pytest.mark.parametrize(("mode", "size", "match"), [
    (0o666, 0, "mode 0666"),  # the attack: an empty world-writable ring made first
    (0o644, 8192, "mode 0644"),
])
def test_a_planted_segment_is_refused_by_writer_and_reader(shm_dir: Path, mode: int,
                                                           size: int, match: str) -> None:
    spec = _spec()
    path = shm_dir / spec.name
    path.write_bytes(bytes(size))
    path.chmod(mode)
    for attach in (_writer, _reader):
        with pytest.raises(OperationalError, match=match):
            attach(spec, shm_dir)
    assert inspect_segment(path) is None  # the launcher does not report it as a ring


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_segment_owned_by_another_user_is_refused(shm_dir: Path) -> None:
    spec = _spec()
    path = shm_dir / spec.name
    os.chmod(shm_dir, 0o1777)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # 0 bytes, like the issue's
    os.chown(path, 65534, 65534)
    with pytest.raises(OperationalError, match="owned by uid 65534"):
        _writer(spec, shm_dir)


def test_a_symlinked_segment_is_not_followed(shm_dir: Path) -> None:
    spec = _spec()
    real = _spec()
    _writer(real, shm_dir).close(unlink_if_drained=False)
    (shm_dir / spec.name).symlink_to(shm_dir / real.name)
    with pytest.raises(OperationalError, match="symbolic link"):
        _reader(spec, shm_dir)


def test_a_segment_of_another_size_is_refused(shm_dir: Path) -> None:
    small, large = _spec(8), _spec(16)
    large = RingSpec(small.name, TICK_DTYPE, 16, lossless=False, readers=("strategy",))
    _writer(small, shm_dir).close(unlink_if_drained=False)
    with pytest.raises(OperationalError, match="bytes, config needs"):
        _writer(large, shm_dir)


def test_free_space_is_checked_before_anything_is_created(shm_dir: Path) -> None:
    huge = RingSpec(unique_name("ticks"), TICK_DTYPE, 1 << 40, lossless=False,
                    readers=("strategy",))
    with pytest.raises(NoSpaceError, match=r"rings need \d+ bytes in rings.shm_dir"):
        check_space([huge], shm_dir)
    check_space([_spec()], shm_dir)
    with pytest.raises(NoSpaceError, match="No such file"):
        check_space([_spec()], shm_dir / "missing")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "shm"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_tmpfs_fails_at_creation_not_with_sigbus(tiny_tmpfs: Path) -> None:
    spec = _spec(1 << 16)  # 3 MiB of ticks in a 1 MiB tmpfs
    assert segment_size(spec) > 1 << 20
    with pytest.raises(NoSpaceError, match=f"cannot reserve {segment_size(spec)} bytes"):
        _writer(spec, tiny_tmpfs)
    assert not (tiny_tmpfs / spec.name).exists()  # no half-made segment left behind
    with pytest.raises(NoSpaceError, match="rings need"):
        check_space([spec], tiny_tmpfs)
    fits = _spec(1 << 10)
    _writer(fits, tiny_tmpfs).close()


def test_a_planted_doorbell_is_refused_and_never_rung(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = bell_path(run_dir, "executor")
    os.mkfifo(path, 0o600)
    path.chmod(0o666)
    with pytest.raises(OperationalError, match=r"doorbell .* mode 0666"):
        Doorbell(run_dir, "executor")
    listener = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # whoever planted it, listening
    ringer = BellRinger(run_dir)
    ringer("executor")
    assert (ringer.rings, ringer.refused) == (0, 1)
    os.close(listener)
    path.unlink()
    path.write_bytes(b"")
    with pytest.raises(OperationalError, match="is a regular file, not a FIFO"):
        Doorbell(run_dir, "executor")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_doorbell_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = bell_path(tmp_path, "ledger")
    os.mkfifo(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(OperationalError, match="owned by uid 65534"):
        Doorbell(tmp_path, "ledger")


def test_a_doorbell_of_ours_is_reused(tmp_path: Path) -> None:
    first = Doorbell(tmp_path, "ledger")
    first.close()
    again = Doorbell(tmp_path, "ledger")  # an earlier start's FIFO, ours and private
    ringer = BellRinger(tmp_path)
    ringer("ledger")
    assert ringer.rings == 1
    ringer.close()
    again.close()


def test_enospc_is_what_posix_fallocate_reports_on_tmpfs(tiny_tmpfs: Path) -> None:
    """The mechanism the ring relies on, checked on this kernel."""
    fd = os.open(tiny_tmpfs / "probe", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        with pytest.raises(OSError, match="No space") as raised:
            os.posix_fallocate(fd, 0, 2 << 20)
        assert raised.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
