"""One session, one owner, on each host: an advisory lock held by the backend that uses it.

Within one actor system the supervision tree guarantees it: a backend is restarted only after
its previous process is gone, and an actor process dies with its parent. Across systems it
does not: a bot group placed on a member host whose supervisor on the leader was SIGKILLed
lives on until its watch of the probes stops it (actors/base.py), while the restarted
supervisor places a new group at once. Two backends on one session is exactly what tgfleet
exists to prevent (AUTH_KEY_DUPLICATED, a locked TDLib database), so each backend on the
processes base takes an exclusive `flock` on `<data_dir>/session.lock` before it opens its
session and holds it for its life. The kernel drops the lock when the process dies, however
it dies. A backend that finds the lock held waits (and says by whom) instead of starting.
"""
from __future__ import annotations

import errno
import fcntl
import os


class SessionLock:
    def __init__(self, directory: str):
        self.path = os.path.join(directory, "session.lock")
        self.fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock: None when this process holds it now, else the holder's pid (0 when
        it is not known)."""
        if self.fd is not None:
            return None
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            return int(holder) if holder.isdigit() else 0
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the only descriptor drops the lock
            self.fd = None
