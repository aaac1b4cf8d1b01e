"""Single-writer, multi-reader ring buffers in named shared memory.

A segment is a file in ``/dev/shm`` (mode 0600) holding a header followed by ``capacity``
fixed-size records (see :mod:`pipeline.records`). Sequences are absolute: record ``s`` lives
in slot ``s % capacity``; the writer owns ``write_seq`` (records published so far) and each
reader owns one cursor (the next sequence it will read) in its own cache line.

Publication protocol (why no record is ever seen half-written). The writer first raises
``claim_seq`` to the end of the batch it is about to write, then copies the records, then
raises ``write_seq``. A reader loads ``write_seq``, copies records below it, then loads
``claim_seq``: any record older than ``claim_seq - capacity`` may have been overwritten while
it was copied, so it is discarded and counted as lost. Aligned 8-byte loads and stores are
atomic on x86-64 and its memory model (TSO) keeps stores in order and loads in order, which
is all this needs; on weaker memory models (ARM) this module would need explicit fences.

Two kinds:
- lossy (ticks): the writer never waits; a reader that falls more than ``capacity`` behind
  skips to the oldest valid record and counts the gap in ``lost``.
- lossless (intents, reports): the writer never overwrites a record that a declared reader
  has not consumed; it waits up to a bound, counts the back-pressure and returns how many
  records it wrote, so the caller keeps the rest.

Either side may create the segment: the spec (capacity, kind, declared readers) comes from
the shared config, so whichever process starts first builds the same header. The header
also names the environment, the layout and the run that last opened it; a mismatched layout
or environment is refused with :class:`RingMismatchError`.

Segment names are predictable, so a segment is never trusted for existing: it is created
with ``O_EXCL`` and mode 0600, its memory reserved at once (a full ``/dev/shm`` is a clear
ENOSPC at creation, not a SIGBUS on a later write), and every attach checks the opened
file's owner and mode (:mod:`pipeline.private_file`): a file planted by another user, or
left world-writable, is refused, never adopted.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.errors import OperationalError
from pipeline.private_file import (
    ForeignFileError,
    NoSpaceError,
    create_exclusive,
    free_bytes,
    open_existing,
)
from pipeline.records import LAYOUT_VERSION, layout_description

MAGIC: Final = 0x31474E4952504C53  # b"SLPRING1" little-endian
MAX_READERS: Final = 8
_LINE: Final = 64
_LAYOUT_TEXT_BYTES: Final = 512
_ENV_BYTES: Final = 32
_NAME_BYTES: Final = 32
# Byte offsets inside the header.
_OFF_MAGIC: Final = 0
_OFF_VERSION: Final = 8  # u32 layout version, u32 record size
_OFF_CAPACITY: Final = 16
_OFF_KIND: Final = 24  # u32 kind, u32 reader slots in use
_OFF_INSTANCE: Final = 32  # 16-byte uuid made when the segment was created
_OFF_RUN: Final = 48  # 16-byte id of the run that last opened it for writing
_OFF_ENV: Final = 64
_OFF_LAYOUT: Final = 128
_OFF_CLAIM: Final = 704  # cache line 11: claim_seq, write_seq, writer pid
_OFF_WRITE: Final = 712
_OFF_WRITER_PID: Final = 720
_OFF_CLOSED: Final = 728
_OFF_SLOTS: Final = 1024  # MAX_READERS lines: cursor, sleeping, pid, active, name
_DATA_OFFSET: Final = 4096

_KIND_LOSSY: Final = 0
_KIND_LOSSLESS: Final = 1

_STRUCT_CODES: Final = {"u8": "Q", "i8": "q", "f8": "d", "u4": "I", "i4": "i", "u2": "H",
                        "i2": "h", "u1": "B", "i1": "b"}


class RingError(Exception):
    """Base class for ring failures."""


class RingMismatchError(RingError, OperationalError):
    """The segment exists but was made for another layout, environment or shape."""


class RingNotFoundError(RingError, OperationalError):
    """No segment of that name appeared before the deadline."""


@dataclass(frozen=True)
class RingSpec:
    """What a ring is: every process derives the same spec from the shared config."""

    name: str
    dtype: np.dtype[np.void]
    capacity: int
    lossless: bool
    readers: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.capacity < 2 or self.capacity & (self.capacity - 1):
            raise ValueError(f"ring {self.name}: capacity must be a power of two, "
                             f"got {self.capacity}")
        if len(self.readers) > MAX_READERS:
            raise ValueError(f"ring {self.name}: at most {MAX_READERS} readers")
        if self.lossless and not self.readers:
            raise ValueError(f"ring {self.name}: a lossless ring needs declared readers")
        if "/" in self.name or not self.name:
            raise ValueError(f"ring name {self.name!r} must be a plain file name")


def struct_format(dtype: np.dtype[np.void]) -> struct.Struct:
    """The struct layout equal to a packed record dtype, for single-record fast paths."""
    codes = ["<"]
    for name in dtype.names or ():
        sub = dtype.fields[name][0] if dtype.fields else None
        assert sub is not None
        key = sub.str[1:]
        if key.startswith("S"):
            codes.append(f"{key[1:]}s")
        else:
            codes.append(_STRUCT_CODES[key])
    fmt = struct.Struct("".join(codes))
    if fmt.size != dtype.itemsize:
        raise ValueError(f"dtype is padded: struct size {fmt.size} != {dtype.itemsize}")
    return fmt


class _Segment:
    """One mapped segment and typed views of its header and records."""

    def __init__(self, path: Path, spec: RingSpec, mm: mmap.mmap) -> None:
        self.path = path
        self.spec = spec
        self.mm = mm
        self.words = memoryview(mm).cast("B")[:_DATA_OFFSET].cast("Q")
        self.records = np.ndarray((spec.capacity,), dtype=spec.dtype, buffer=mm,
                                  offset=_DATA_OFFSET)
        self.raw = self.records.view(np.dtype((np.void, spec.dtype.itemsize)))
        self.mask = spec.capacity - 1

    def word(self, offset: int) -> int:
        return int(self.words[offset // 8])

    def set_word(self, offset: int, value: int) -> None:
        self.words[offset // 8] = value

    def text(self, offset: int, size: int) -> str:
        return bytes(self.mm[offset:offset + size]).rstrip(b"\0").decode()

    def slot_offset(self, index: int) -> int:
        return _OFF_SLOTS + index * _LINE

    def slot_names(self) -> list[str]:
        count = self.word(_OFF_KIND) >> 32
        return [self.text(self.slot_offset(i) + 32, _NAME_BYTES) for i in range(count)]

    def close(self) -> None:
        self.words.release()
        del self.records, self.raw
        with contextlib.suppress(BufferError):  # a caller still holds a view: the mapping
            self.mm.close()  # then lives until the process exits


def _segment_size(spec: RingSpec) -> int:
    return _DATA_OFFSET + spec.capacity * spec.dtype.itemsize


def _init_header(mm: mmap.mmap, spec: RingSpec, env: str, run_id: uuid.UUID) -> None:
    words = memoryview(mm).cast("B")[:_DATA_OFFSET].cast("Q")
    try:
        words[_OFF_VERSION // 8] = LAYOUT_VERSION | (spec.dtype.itemsize << 32)
        words[_OFF_CAPACITY // 8] = spec.capacity
        kind = _KIND_LOSSLESS if spec.lossless else _KIND_LOSSY
        words[_OFF_KIND // 8] = kind | (len(spec.readers) << 32)
        mm[_OFF_INSTANCE:_OFF_INSTANCE + 16] = uuid.uuid4().bytes
        mm[_OFF_RUN:_OFF_RUN + 16] = run_id.bytes
        mm[_OFF_ENV:_OFF_ENV + _ENV_BYTES] = env.encode().ljust(_ENV_BYTES, b"\0")
        layout = layout_description(spec.dtype).encode()
        if len(layout) > _LAYOUT_TEXT_BYTES:
            raise ValueError("record layout description too long for the header")
        mm[_OFF_LAYOUT:_OFF_LAYOUT + _LAYOUT_TEXT_BYTES] = layout.ljust(_LAYOUT_TEXT_BYTES, b"\0")
        for index, name in enumerate(spec.readers):
            base = _OFF_SLOTS + index * _LINE
            mm[base + 32:base + 32 + _NAME_BYTES] = name.encode().ljust(_NAME_BYTES, b"\0")
        words[_OFF_MAGIC // 8] = MAGIC  # last: attaching processes wait for it
    finally:
        words.release()


def _validate(seg: _Segment, env: str) -> None:
    spec = seg.spec
    if seg.word(_OFF_MAGIC) != MAGIC:
        raise RingMismatchError(f"ring {spec.name}: {seg.path} is not a pipeline ring")
    found_env = seg.text(_OFF_ENV, _ENV_BYTES)
    if found_env != env:
        raise RingMismatchError(f"ring {spec.name} belongs to environment {found_env!r}, "
                                f"this process runs {env!r}; refusing to mix them")
    layout = seg.text(_OFF_LAYOUT, _LAYOUT_TEXT_BYTES)
    expected = layout_description(spec.dtype)
    if layout != expected:
        raise RingMismatchError(f"ring {spec.name}: record layout differs: segment has "
                                f"{layout!r}, this process expects {expected!r}")
    kind = seg.word(_OFF_KIND) & 0xFFFFFFFF
    if seg.word(_OFF_CAPACITY) != spec.capacity or kind != int(spec.lossless):
        raise RingMismatchError(f"ring {spec.name}: capacity/kind in segment "
                                f"({seg.word(_OFF_CAPACITY)}/{kind}) differ from config "
                                f"({spec.capacity}/{int(spec.lossless)}); {_remedy(seg)}")
    if tuple(seg.slot_names()) != spec.readers:
        raise RingMismatchError(f"ring {spec.name}: declared readers {seg.slot_names()} "
                                f"differ from config {list(spec.readers)}; {_remedy(seg)}")


def _remedy(seg: _Segment) -> str:
    """What an operator can do about a segment another version or config left behind."""
    if not seg.spec.lossless:
        return (f"it was left by another version or configuration: with every process of "
                f"this data dir stopped, remove {seg.path} (a lossy ring: nothing is lost)")
    return (f"it was left by another version or configuration: let that one finish it, "
            f"or remove {seg.path} knowing that its unread records are lost")


def _open_segment(spec: RingSpec, env: str, run_id: uuid.UUID, shm_dir: Path,
                  timeout_s: float) -> tuple[_Segment, bool]:
    """Create the segment, or attach to the one another process made. Returns (seg, created)."""
    path = shm_dir / spec.name
    size = _segment_size(spec)
    deadline = time.monotonic() + timeout_s
    kind = f"ring {spec.name}"
    while True:
        try:
            fd = create_exclusive(path, os.O_RDWR, kind, size=size)
        except FileExistsError:
            pass
        else:
            try:
                mm = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            _init_header(mm, spec, env, run_id)
            return _Segment(path, spec, mm), True
        try:
            # Owner and mode now; the size once the creator has had time to reserve it.
            fd = open_existing(path, os.O_RDWR, kind)
        except FileNotFoundError:
            continue  # unlinked between our two opens: try creating again
        try:
            actual = os.fstat(fd).st_size
            if actual >= _DATA_OFFSET:
                mm = mmap.mmap(fd, actual)
                if int.from_bytes(mm[:8], "little") == MAGIC:
                    if actual != size:
                        found = bytes(mm[_OFF_LAYOUT:_OFF_LAYOUT + _LAYOUT_TEXT_BYTES])
                        mm.close()
                        layout = found.rstrip(b"\0").decode()
                        if layout != layout_description(spec.dtype):
                            raise RingMismatchError(
                                f"ring {spec.name}: record layout differs: segment has "
                                f"{layout!r}, this process expects "
                                f"{layout_description(spec.dtype)!r}")
                        raise RingMismatchError(
                            f"ring {spec.name}: segment is {actual} bytes, config needs {size}")
                    seg = _Segment(path, spec, mm)
                    _validate(seg, env)
                    return seg, False
                mm.close()
        finally:
            os.close(fd)
        if time.monotonic() > deadline:
            raise RingNotFoundError(f"ring {spec.name}: {path} exists but was never "
                                    f"initialised (creator died?); remove it")
        time.sleep(0.001)  # another process is initialising the header right now


def segment_size(spec: RingSpec) -> int:
    """Bytes the segment of ``spec`` takes in the shm directory."""
    return _segment_size(spec)


def check_space(specs: Sequence[RingSpec], shm_dir: Path, extra_bytes: int = 0) -> None:
    """Refuse to start when the segments still to be created cannot fit in ``shm_dir``.

    Segments that already exist are counted as present; ``extra_bytes`` covers other
    files (the kill flag). Raises NoSpaceError naming the directory and the sizes.
    """
    try:
        free = free_bytes(shm_dir)
    except OSError as exc:
        raise NoSpaceError(f"rings.shm_dir {shm_dir}: {exc.strerror}") from None
    missing = [s for s in specs if not (shm_dir / s.name).exists()]
    need = sum(_segment_size(s) for s in missing) + extra_bytes
    if need > free:
        sizes = ", ".join(f"{s.name} {_segment_size(s)}" for s in missing)
        raise NoSpaceError(f"rings need {need} bytes in rings.shm_dir {shm_dir} ({sizes}) "
                           f"but only {free} are free; make room there or lower "
                           "rings.*_capacity")


def unlink(spec_name: str, shm_dir: Path = Path("/dev/shm")) -> bool:
    """Remove a segment by name; processes still attached keep their mapping."""
    try:
        os.unlink(shm_dir / spec_name)
    except FileNotFoundError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RingWriter:
    """The single writer of a ring."""

    def __init__(self, spec: RingSpec, *, env: str, run_id: uuid.UUID,
                 ring_bell: Callable[[str], None] | None = None,
                 shm_dir: Path = Path("/dev/shm"), backpressure_timeout_s: float = 0.0,
                 open_timeout_s: float = 2.0) -> None:
        self.spec = spec
        self._seg, self.created = _open_segment(spec, env, run_id, shm_dir, open_timeout_s)
        seg = self._seg
        self.previous_run_id = uuid.UUID(bytes=bytes(seg.mm[_OFF_RUN:_OFF_RUN + 16]))
        seg.mm[_OFF_RUN:_OFF_RUN + 16] = run_id.bytes
        seg.set_word(_OFF_WRITER_PID, os.getpid())
        seg.set_word(_OFF_CLOSED, 0)
        self._struct = struct_format(spec.dtype)
        self._itemsize = spec.dtype.itemsize
        self._cap = spec.capacity
        self._seq = seg.word(_OFF_WRITE)  # resume where a crashed writer left off
        # A writer that died mid-batch left claim_seq ahead of write_seq: the slots it was
        # overwriting may be torn, so the claim only ever moves forward.
        self._claim = max(seg.word(_OFF_CLAIM), self._seq)
        self._ring_bell = ring_bell
        self._slots = [seg.slot_offset(i) for i in range(len(spec.readers))]
        self._names = list(spec.readers)
        self._words = seg.words
        self._sleep_idx = [(o + 8) // 8 for o in self._slots]
        self._cursor_idx = [o // 8 for o in self._slots]
        self._space_end = 0  # write_one may publish below this sequence without a check
        self.backpressure_timeout_s = backpressure_timeout_s
        self.backpressure_waits = 0  # times the writer had to wait for a reader
        self.backpressure_timeouts = 0  # times it gave up with records left unwritten

    @property
    def seq(self) -> int:
        """Records published so far (the next record gets this sequence)."""
        return self._seq

    @property
    def instance_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(self._seg.mm[_OFF_INSTANCE:_OFF_INSTANCE + 16]))

    def free(self) -> int:
        """Slots the writer may fill without overwriting unread records (lossless rings)."""
        if not self.spec.lossless:
            return self._cap
        words = self._words
        oldest = min(words[i] for i in self._cursor_idx)
        return self._cap - (self._seq - oldest)

    def _wait_for_space(self, need: int, deadline: float) -> int:
        free = self.free()
        if free >= need or not self.spec.lossless:
            return free
        self.backpressure_waits += 1
        self._wake_readers()
        pause = 0.00005
        while free < need and time.monotonic() < deadline:
            time.sleep(pause)  # a lagging reader is a millisecond problem, not a microsecond one
            pause = min(pause * 2, 0.002)
            free = self.free()
        if free < need:
            self.backpressure_timeouts += 1
        return free

    def _raise_claim(self, end: int) -> None:
        if end > self._claim:
            self._claim = end
            self._words[_OFF_CLAIM // 8] = end

    def _publish(self, new_seq: int) -> None:
        self._words[_OFF_WRITE // 8] = new_seq
        self._seq = new_seq
        self._wake_readers()

    def _wake_readers(self) -> None:
        if self._ring_bell is None:
            return
        words = self._words
        for index, sleep_idx in enumerate(self._sleep_idx):
            if words[sleep_idx]:
                self._ring_bell(self._names[index])

    def write(self, batch: np.ndarray) -> int:
        """Publish records (a contiguous array of the ring's dtype); returns how many."""
        if batch.dtype != self.spec.dtype:
            raise TypeError(f"ring {self.spec.name}: expected dtype {self.spec.dtype}, "
                            f"got {batch.dtype}")
        raw = np.ascontiguousarray(batch).view(self._seg.raw.dtype)
        total = len(raw)
        done = 0
        deadline = time.monotonic() + self.backpressure_timeout_s  # one bound per call
        while done < total:
            want = min(total - done, self._cap)
            space = self._wait_for_space(want, deadline)
            n = min(want, space)
            if n <= 0:
                break
            start = self._seq
            self._raise_claim(start + n)
            first = start & self._seg.mask
            head = min(n, self._cap - first)
            self._seg.raw[first:first + head] = raw[done:done + head]
            if head < n:
                self._seg.raw[:n - head] = raw[done + head:done + n]
            self._publish(start + n)
            done += n
            if n < want:  # the bound passed with the ring still short: the caller keeps the rest
                break
        return done

    def write_one(self, *values: Any) -> bool:
        """Publish one record given as field values in layout order; False if no space.

        The hot single-record path: free space is re-read from the reader cursors only once
        the space seen last time is used up (cursors only move forward, so it never shrinks),
        and claim, copy and publish are inlined.
        """
        seq = self._seq
        if self.spec.lossless and seq >= self._space_end:
            if self.free() < 1 and self._wait_for_space(
                    1, time.monotonic() + self.backpressure_timeout_s) < 1:
                return False
            self._space_end = seq + self.free()
        words = self._words
        end = seq + 1
        if end > self._claim:
            self._claim = end
            words[_OFF_CLAIM // 8] = end
        self._struct.pack_into(self._seg.mm, _DATA_OFFSET + (seq & self._seg.mask)
                               * self._itemsize, *values)
        words[_OFF_WRITE // 8] = end
        self._seq = end
        if self._ring_bell is not None:
            for index, sleep_idx in enumerate(self._sleep_idx):
                if words[sleep_idx]:
                    self._ring_bell(self._names[index])
        return True

    def close(self, unlink_if_drained: bool = True) -> bool:
        """Detach; unlink only if every declared reader consumed everything (never lose data).

        Returns whether the segment was unlinked.
        """
        drained = self.free() == self._cap if self.spec.lossless else True
        removed = False
        if unlink_if_drained and drained:
            self._seg.set_word(_OFF_CLOSED, 1)
            removed = unlink(self._seg.path.name, self._seg.path.parent)
        self._seg.close()
        return removed


class RingReader:
    """One reader of a ring, owning one cursor slot in the header."""

    def __init__(self, spec: RingSpec, reader: str, *, env: str, run_id: uuid.UUID,
                 shm_dir: Path = Path("/dev/shm"), open_timeout_s: float = 2.0) -> None:
        if reader not in spec.readers:
            raise RingError(f"ring {spec.name}: {reader!r} is not a declared reader "
                            f"{list(spec.readers)}")
        self.spec = spec
        self.name = reader
        self._seg, self.created = _open_segment(spec, env, run_id, shm_dir, open_timeout_s)
        index = spec.readers.index(reader)
        base = self._seg.slot_offset(index)
        self._cursor_idx = base // 8
        self._sleep_idx = base // 8 + 1
        self._words = self._seg.words
        holder = int(self._words[base // 8 + 2])
        if self._words[base // 8 + 3] and holder != os.getpid() and pid_alive(holder):
            self._seg.close()
            raise RingError(f"ring {spec.name}: reader {reader!r} is already attached by live "
                            f"process {holder}; two processes must not share a cursor")
        self._words[base // 8 + 2] = os.getpid()
        self._words[base // 8 + 3] = 1
        self._cap = spec.capacity
        self._struct = struct_format(spec.dtype)
        self.lost = 0  # records skipped after an overrun (lossy rings only)

    @property
    def cursor(self) -> int:
        """The next sequence this reader will read."""
        return int(self._words[self._cursor_idx])

    @property
    def write_seq(self) -> int:
        return int(self._words[_OFF_WRITE // 8])

    @property
    def instance_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(self._seg.mm[_OFF_INSTANCE:_OFF_INSTANCE + 16]))

    @property
    def closed(self) -> bool:
        """True once the writer shut down in order and unlinked the segment."""
        return bool(self._words[_OFF_CLOSED // 8])

    @property
    def writer_pid(self) -> int:
        """The pid of the process that last opened the ring for writing (0: none yet)."""
        return int(self._words[_OFF_WRITER_PID // 8])

    def available(self) -> int:
        """Published records not yet read (may exceed capacity on an overrun lossy ring)."""
        return int(self._words[_OFF_WRITE // 8] - self._words[self._cursor_idx])

    def seek(self, seq: int) -> None:
        """Move the cursor, e.g. to the position a durable store recorded."""
        write = self.write_seq
        if seq > write:
            raise RingError(f"ring {self.spec.name}: cannot seek to {seq} beyond the "
                            f"published sequence {write}")
        if self.spec.lossless and seq < write - self._cap:
            raise RingError(f"ring {self.spec.name}: cannot seek to {seq}: records before "
                            f"{write - self._cap} are gone (the lossless data is not there)")
        self._words[self._cursor_idx] = seq

    def set_sleeping(self, sleeping: bool) -> None:
        """Tell the writer to ring this reader's doorbell on the next publish."""
        self._words[self._sleep_idx] = int(sleeping)

    def peek(self, max_records: int) -> np.ndarray:
        """Copy up to ``max_records`` unread records without consuming them."""
        words = self._words
        write = int(words[_OFF_WRITE // 8])
        cursor = int(words[self._cursor_idx])
        if write - cursor > self._cap:  # lossy overrun: jump to the oldest record still there
            self.lost += write - self._cap - cursor
            cursor = write - self._cap
            words[self._cursor_idx] = cursor
        n = min(write - cursor, max_records)
        out = np.empty(n, dtype=self.spec.dtype)
        if n <= 0:
            return out
        raw = out.view(self._seg.raw.dtype)
        first = cursor & self._seg.mask
        head = min(n, self._cap - first)
        raw[:head] = self._seg.raw[first:first + head]
        if head < n:
            raw[head:] = self._seg.raw[:n - head]
        if not self.spec.lossless:
            oldest_valid = int(words[_OFF_CLAIM // 8]) - self._cap
            torn = oldest_valid - cursor
            if torn > 0:  # overwritten while we copied them: drop, count, move on
                self.lost += min(torn, n)
                words[self._cursor_idx] = cursor + min(torn, n)
                return out[min(torn, n):]
        return out

    def advance(self, count: int) -> None:
        """Consume ``count`` records after :meth:`peek`; lossless writers may then reuse them."""
        self._words[self._cursor_idx] = self._words[self._cursor_idx] + count

    def read(self, max_records: int) -> np.ndarray:
        """Copy and consume up to ``max_records`` records."""
        out = self.peek(max_records)
        self.advance(len(out))
        return out

    def read_one(self) -> tuple[Any, ...] | None:
        """Consume one record as a tuple of field values, or None if none is ready."""
        batch = self.read(1)
        if not len(batch):
            return None
        return tuple(batch[0].item())

    def close(self) -> None:
        self._words[self._cursor_idx + 2] = 0  # pid
        self._words[self._cursor_idx + 3] = 0  # active
        self._words[self._sleep_idx] = 0
        self._seg.close()


def reader_positions(readers: Sequence[RingReader]) -> dict[str, dict[str, int]]:
    """Cursor, lag and loss per reader, for status and metrics."""
    return {r.spec.name + ":" + r.name: {"cursor": r.cursor, "lag": r.available(),
                                         "lost": r.lost} for r in readers}


@dataclass(frozen=True)
class SegmentInfo:
    """A ring header read without attaching, for the launcher and status tools."""

    name: str
    env: str
    run_id: uuid.UUID
    lossless: bool
    write_seq: int
    cursors: tuple[int, ...]  # per declared reader, in declared order
    closed: bool

    @property
    def unread(self) -> int:
        """Records the first declared reader (a lossless ring's system of record) lacks."""
        return self.write_seq - (self.cursors[0] if self.cursors else self.write_seq)


def inspect_segment(path: Path) -> SegmentInfo | None:
    """Read a segment's header; None if it is not a pipeline ring of this user."""
    try:
        fd = open_existing(path, os.O_RDONLY | os.O_NONBLOCK, "ring")
    except (OSError, ForeignFileError):
        return None
    try:
        header = os.pread(fd, _DATA_OFFSET, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(header) < _DATA_OFFSET or int.from_bytes(header[:8], "little") != MAGIC:
        return None

    def word(offset: int) -> int:
        return int.from_bytes(header[offset:offset + 8], "little")

    readers = word(_OFF_KIND) >> 32
    cursors = [word(_OFF_SLOTS + i * _LINE) for i in range(readers)]
    return SegmentInfo(
        name=path.name, env=header[_OFF_ENV:_OFF_ENV + _ENV_BYTES].rstrip(b"\0").decode(),
        run_id=uuid.UUID(bytes=header[_OFF_RUN:_OFF_RUN + 16]),
        lossless=(word(_OFF_KIND) & 0xFFFFFFFF) == _KIND_LOSSLESS, write_seq=word(_OFF_WRITE),
        cursors=tuple(cursors), closed=bool(word(_OFF_CLOSED)))
