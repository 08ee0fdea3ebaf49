"""One folder, one writer: an exclusive lock on a run folder or a cache folder.

The lock is `flock` on `FOLDER/.lock`, held for as long as the process works in the folder. The
kernel drops it when the process ends, however it ends (kill -9 included), so a stale lock file
never blocks a later `--resume`; the file only records who held it last, for the message.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from potstill.errors import PotstillError

LOCK_NAME = ".lock"


class FolderLock:
    """An exclusive, non-blocking lock on a folder; `what` names the folder in messages."""

    def __init__(self, folder: str | Path, what: str) -> None:
        self.folder, self.what = Path(folder), what
        self.handle: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> FolderLock:
        if self.handle is not None:
            return self
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise PotstillError(f"cannot lock {self.what} {self.folder}: {error.strerror or error}") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            os.close(handle)
            raise PotstillError(
                f"{self.what} {self.folder} is in use by another potstill process{holder}; wait for it to finish "
                "or stop it (its checkpoints stay intact), then run again"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps({"pid": os.getpid(), "since": time.time(), "argv": sys.argv[:4]}).encode())
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            os.close(self.handle)
            self.handle = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(handle: int) -> str:
    try:
        holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return ""
    pid = holder.get("pid") if isinstance(holder, dict) else None
    return f" (pid {pid})" if isinstance(pid, int) else ""


# Locks this process holds on folders, by real path: a process that opens the same run folder
# twice (a resume from Python, a test) shares its own lock instead of refusing itself.
_HELD: dict[str, FolderLock] = {}


def hold(folder: str | Path, what: str) -> FolderLock:
    """Take (or share, within this process) the lock on `folder` until `let_go`."""
    key = os.path.realpath(folder)
    if key not in _HELD:
        _HELD[key] = FolderLock(folder, what).acquire()
    return _HELD[key]


def let_go(folder: str | Path) -> None:
    lock = _HELD.pop(os.path.realpath(folder), None)
    if lock is not None:
        lock.release()
