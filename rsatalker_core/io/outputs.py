"""Output locations: checked before any work starts, written atomically at the end.

Every command that writes files (``rsatalker generate``, ``evaluate``, ``evaluate-bag``,
``train``, ``track`` and ``rsatalker_bringup``) calls :func:`check_writable` on each output
path first, so a read-only directory, a path that is a directory, or a path under a regular
file is reported as one :class:`~rsatalker_core.errors.OutputError` before minutes of work,
not as a traceback after them.

:class:`AtomicOutputs` gives each output a hidden temporary name in the same directory
(so the final rename is atomic) and renames all of them only when the whole command
succeeded; on any failure (including Ctrl-C) the temporaries are removed and no partial
file is left behind.

Example:
    >>> check_writable("out/motion.npz", "file")
    >>> with AtomicOutputs() as outs:
    ...     save_motion_npz(outs.temp("out/motion.npz"), motion)
    ...     write_video(outs.temp("out/avatar.mp4"), frames)
    ... # both files appear here, together, or neither does
"""

from __future__ import annotations

import os
import tempfile
from typing import Dict, List, Optional

from rsatalker_core.errors import OutputError

__all__ = ["check_writable", "AtomicOutputs", "remove_quietly"]

_KINDS = ("file", "dir")


def _nearest_existing(path: str) -> str:
    """The path itself or its closest existing ancestor."""
    cur = path
    while not os.path.lexists(cur):
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return cur


def _probe_dir(folder: str) -> Optional[str]:
    """Try to create (and remove) a file in ``folder``; the OS's reason when it cannot.

    ``os.access`` is not enough: it says yes to root on a read-only file system.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".rsatalker-write-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    remove_quietly(probe)
    return None


def check_writable(path: str, kind: str = "file", what: str = "output") -> str:
    """Check that ``path`` can be written as a ``kind`` (``"file"`` or ``"dir"``), creating
    nothing.

    A file may exist (it is replaced) but must not be a directory; a directory may exist
    (it must be a directory) or be creatable. Missing parent directories are fine when the
    nearest existing ancestor is a writable directory (they are created at write time).

    Args:
        path: the output path (relative paths are taken from the current directory).
        kind: ``"file"`` or ``"dir"``.
        what: how the message names the path (e.g. ``"--out-motion"``).

    Returns:
        ``path`` unchanged.

    Raises:
        OutputError: empty path, a directory where a file is expected (or a file where a
            directory is), a path under a regular file, or a directory that cannot be
            written (permissions, read-only file system).
        ValueError: ``kind`` is not ``"file"`` or ``"dir"`` (a programming error).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise OutputError(f"{what}: empty output path")
    path = os.fspath(path)
    full = os.path.abspath(path)
    if kind == "file":
        if path.endswith(os.sep) or os.path.isdir(full):
            raise OutputError(f"{what} {path}: is a directory, expected a file path")
        if os.path.lexists(full) and not os.path.isfile(full):
            raise OutputError(f"{what} {path}: exists and is not a regular file")
    elif os.path.lexists(full) and not os.path.isdir(full):
        raise OutputError(f"{what} {path}: exists and is not a directory")
    folder = full if kind == "dir" and os.path.isdir(full) else _nearest_existing(os.path.dirname(full))
    if not os.path.isdir(folder):
        raise OutputError(f"{what} {path}: lies under {folder}, which is a file, not a directory")
    reason = _probe_dir(folder)
    if reason is not None:
        raise OutputError(f"{what} {path}: cannot write in {folder} ({reason})")
    return path


def remove_quietly(path: Optional[str]) -> None:
    """Remove a file if it exists; errors are ignored (used on failure paths)."""
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


class AtomicOutputs:
    """All-or-nothing outputs of one command.

    :meth:`temp` returns a hidden temporary path next to each final path (same directory,
    same extension, so writers that pick a format by extension still work); leaving the
    ``with`` block normally renames every temporary onto its final path, leaving it by an
    exception (or calling :meth:`abort`) removes them all. Missing parent directories are
    created by :meth:`temp`.

    Raises:
        OutputError: (from :meth:`temp`) the directory cannot be created; (on commit) a
            temporary was never written or cannot be renamed.
    """

    def __init__(self) -> None:
        self._temps: Dict[str, str] = {}  # final path -> temporary path

    def temp(self, path: str) -> str:
        """A fresh temporary path for final ``path`` (the file is not created)."""
        path = os.fspath(path)
        if path in self._temps:
            return self._temps[path]
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create directory {folder} ({exc.strerror or exc})") from exc
        base, ext = os.path.splitext(os.path.basename(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".part{ext}", dir=folder)
        os.close(fd)
        os.remove(tmp)  # writers create it; only the unique name is reserved
        self._temps[path] = tmp
        return tmp

    def commit(self) -> List[str]:
        """Rename every temporary onto its final path; returns the final paths."""
        missing = [p for p, t in self._temps.items() if not os.path.isfile(t)]
        if missing:
            self.abort()
            raise OutputError(f"output(s) never written: {', '.join(missing)}")
        done = []
        try:
            for path, tmp in self._temps.items():
                os.replace(tmp, path)
                done.append(path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot move the output into place: {exc}") from exc
        self._temps.clear()
        return done

    def abort(self) -> None:
        """Remove every temporary (idempotent)."""
        for tmp in self._temps.values():
            remove_quietly(tmp)
        self._temps.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a
    rename: readers see the old file or the whole new one, never part of it, and an
    interrupted write leaves no temporary behind.

    Raises:
        OSError: the directory cannot be created or written.
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
