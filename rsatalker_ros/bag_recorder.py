"""Writing serialized (CDR) ROS 2 messages to a rosbag2 recording with ``rosbags``.

:class:`BagWriter` is what the recorder node uses for ``ros2 bag record``-compatible output
on machines without rosbag2: it takes the raw bytes a ``raw=True`` subscription delivers,
so header stamps and every field stay exactly as published, and writes them with their
receive time (ns). Each topic's connection carries its message definition and RIHS01 type
hash (rsatalker's own types parsed from the package's ``msg/`` files, the rest from rosbags'
Jazzy typestore), so ``ros2 bag info/play``, Foxglove and ``rsatalker evaluate-bag`` read it.

The writer is thread-safe (callbacks of a MultiThreadedExecutor may write concurrently) and
never raises from :meth:`BagWriter.write`: I/O errors are counted and reported through the
``on_error`` callback, and :meth:`BagWriter.close` finishes the file (MCAP summary and
index, ``metadata.yaml``) so the recording is readable after a clean shutdown.

Surviving a kill (MCAP): rosbags collects messages into 1-MiB chunks that reach the file
only when full, behind Python's write buffer, and writes ``metadata.yaml`` and the MCAP
summary only in ``close()``; a SIGKILL lost everything. Here the pending chunk is closed and
the file flushed to the OS at least every ``flush_period_s`` (default 0.5 s; the recorder node uses 0.25 s): from
:meth:`BagWriter.write` when the period has passed, and from :meth:`BagWriter.flush`, which
the recorder node also calls on a timer so a quiet topic's last messages reach the disk.
After a kill the ``.mcap`` file holds every chunk flushed so far but no summary, footer or
``metadata.yaml``; :func:`rsatalker_core.evaluation.bag.read_session` reads such a file
sequentially (docs/ros.md, "Recording").
"""

from __future__ import annotations

import threading
from pathlib import Path
import time
from typing import Callable, Dict, Optional

from rsatalker_core.errors import BagError
from rsatalker_core.io.bag_types import msgdef, session_typestore

#: rosbag2 storage plugins the writer supports (``ros2 bag record -s``).
STORAGES = ("mcap", "sqlite3")


def _qos(reliable: bool, depth: int):
    """rosbags' ``Qos`` record: keep-last ``depth``, volatile, default deadline/lifespan."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, int(depth),
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.VOLATILE, zero, zero, QosLiveliness.AUTOMATIC, zero, False)


class BagWriter:
    """A rosbag2 recording (directory with ``metadata.yaml`` and one ``.mcap``/``.db3`` file).

    Args:
        path: the bag directory to create; must not exist (like ``ros2 bag record -o``).
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
        on_error: called with a message for each failed write (for throttled logging).
        flush_period_s: longest time, s, a written message stays in memory before its
            chunk is closed and flushed to the OS (MCAP) or the transaction committed
            (sqlite3).
            ``0`` flushes after every message.

    Raises:
        BagError: ``path`` exists, the storage is unknown, the directory cannot be created,
            or the message definitions are not found.
    """

    def __init__(self, path: str, storage: str = "mcap", on_error: Optional[Callable[[str], None]] = None,
                 flush_period_s: float = 0.5):
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        if storage not in STORAGES:
            raise BagError(f"bag storage '{storage}' is not one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: exists already; a recording is never overwritten")
        self.storage = storage
        self.on_error = on_error
        self.typestore = session_typestore()
        self._lock = threading.Lock()
        self._connections: Dict[str, object] = {}
        self.counts: Dict[str, int] = {}
        self.errors = 0
        if not flush_period_s >= 0:  # also rejects NaN
            raise BagError(f"flush_period_s must be >= 0, got {flush_period_s}")
        self.flush_period_s = float(flush_period_s)
        self.flushes = 0
        self._last_flush = time.monotonic()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f"{self.path}: cannot create the recording ({exc})") from exc
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def add_topic(self, topic: str, msgtype: str, reliable: bool = True, depth: int = 10) -> None:
        """Register ``topic`` (absolute name, e.g. ``/avatar/flame_params``) of ``msgtype``
        (``pkg/msg/Type``) with its definition and type hash.

        ``reliable`` and ``depth`` are stored as the topic's offered QoS (keep-last, volatile),
        which ``ros2 bag play`` republishes with (best effort for audio and images).

        Raises:
            BagError: the type is unknown to the typestore, or the topic was added already.
        """
        with self._lock:
            if topic in self._connections:
                raise BagError(f"topic {topic} is recorded already")
            try:
                text, rihs01 = msgdef(self.typestore, msgtype)
                self._connections[topic] = self._writer.add_connection(
                    topic, msgtype, msgdef=text, rihs01=rihs01, offered_qos_profiles=[_qos(reliable, depth)])
            except Exception as exc:  # rosbags' TypesysError / WriterError
                raise BagError(f"cannot record {topic} as {msgtype}: {exc}") from exc
            self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes) -> bool:
        """Append one serialized message received at ``stamp_ns`` (ns). Returns success.

        Never raises: a closed bag, an unknown topic or an I/O error returns ``False`` and is
        reported through ``on_error``.
        """
        with self._lock:
            if not self._open:
                return False
            conn = self._connections.get(topic)
            if conn is None:
                return self._fail(f"topic {topic} is not recorded")
            try:
                self._writer.write(conn, int(stamp_ns), bytes(data))
            except Exception as exc:  # OSError (disk full), WriterError
                return self._fail(f"{self.path}: write of {topic} failed: {type(exc).__name__}: {exc}")
            self.counts[topic] += 1
            if time.monotonic() - self._last_flush >= self.flush_period_s:
                self._flush_locked()
            return True

    def flush(self) -> bool:
        """Close the pending MCAP chunk and flush the file to the OS, so what was written so
        far survives a kill of the process. Never raises; returns success (``False`` for a
        closed bag or an I/O error, reported through ``on_error``)."""
        with self._lock:
            if not self._open:
                return False
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        self._last_flush = time.monotonic()
        storage = getattr(self._writer, "storage", None)
        try:
            chunk = getattr(storage, "chunk", None)  # rosbags' McapWriter: the pending chunk
            if chunk is not None and chunk.msgs:
                storage.close_chunk()
            bio = getattr(storage, "bio", None)
            if bio is not None:
                bio.flush()
            conn = getattr(storage, "conn", None)  # rosbags' Sqlite3Writer: commit the transaction
            if conn is not None:
                conn.commit()
        except Exception as exc:  # OSError (disk full)
            return self._fail(f"{self.path}: flush failed: {type(exc).__name__}: {exc}")
        self.flushes += 1
        return True

    def _fail(self, message: str) -> bool:
        self.errors += 1
        if self.on_error is not None:
            self.on_error(message)
        return False

    def close(self) -> None:
        """Finish the recording (index, summary, ``metadata.yaml``). Idempotent.

        Raises:
            BagError: the file could not be finished (the partial file is left as it is).
        """
        with self._lock:
            if not self._open:
                return
            self._open = False
            try:
                self._writer.close()
            except Exception as exc:
                raise BagError(f"{self.path}: could not finish the recording: {exc}") from exc
