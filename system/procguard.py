"""Actor processes die with their parent: no orphan ever keeps a session open.

thespian leaves the children of a SIGKILLed actor running under PID 1, and they even survive the
system's shutdown. An orphaned backend would keep using its session while its replacement starts
(AUTH_KEY_DUPLICATED, "database is locked"). Linux's PR_SET_PDEATHSIG makes the kernel send
SIGKILL to a process when its parent dies; every actor process sets it as it starts, so a kill
anywhere in the tree takes the whole subtree with it.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal

PR_SET_PDEATHSIG = 1
_libc = None
MAIN_PID_ENV = "TGFLEET_MAIN_PID"


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            logging.getLogger("tgfleet.procguard").warning(
                "prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
            return False
        return True
    except OSError as exc:
        logging.getLogger("tgfleet.procguard").warning("no prctl here: %s", exc)
        return False


def pid_alive(pid: int) -> bool:
    """True while another process `pid` exists and is not a zombie waiting to be reaped."""
    if not pid or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def in_own_process() -> bool:
    """True inside an actor process of the multiproc base (not the launcher/in-process main)."""
    main = os.environ.get(MAIN_PID_ENV)
    return main is not None and int(main) != os.getpid()


def guard_actor_process(parent_pid_expected: int | None = None) -> None:
    """Called when an actor starts: bind this process's life to its parent's."""
    if not in_own_process():
        return
    set_parent_death_signal(signal.SIGKILL)
    # The parent may already have died between fork and prctl: then we are an orphan already.
    if parent_pid_expected is not None and os.getppid() != parent_pid_expected:
        os.kill(os.getpid(), signal.SIGKILL)


def end_admin(launcher_pid: int) -> None:
    """SIGKILL thespian's admin, the calling actor's parent (unless that is the launcher
    itself, i.e. no admin in between); the caller and every other actor process of that system
    follow it (parent-death signal). For when the launcher is gone: thespian's admin
    daemonizes, so nothing else would ever end it."""
    admin = os.getppid()
    if admin > 1 and admin != launcher_pid:
        os.kill(admin, signal.SIGKILL)


class DeathSignalFilter:
    """A logging filter whose construction binds the process to its parent.

    thespian's logger process is forked by the admin and configured from our `logDefs`; it runs
    none of our actor code, so this filter (named in logDefs) is the one hook we have in it. When
    the admin is SIGKILLed, the logger would otherwise survive and keep the admin port open."""

    def __init__(self):
        if in_own_process():
            set_parent_death_signal(signal.SIGKILL)

    def filter(self, record) -> bool:
        return True
