"""The per-host session lock (system/sessionlock.py): one backend process per session, the lock
gone with its holder however it dies. Real processes: the holder is a separate Python."""
import os
import signal
import subprocess
import sys
import time

from system.sessionlock import SessionLock

HOLD = """
import sys, time
from system.sessionlock import SessionLock
lock = SessionLock(sys.argv[1])
assert lock.acquire() is None
print("held", flush=True)
time.sleep(60)
"""


def _holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "s")],
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_session_names_its_holder_until_the_holder_dies(tmp_path):
    proc = _holder(tmp_path)
    try:
        mine = SessionLock(str(tmp_path / "s"))
        assert mine.acquire() == proc.pid
        assert mine.acquire() == proc.pid            # still held: asking again changes nothing
        os.kill(proc.pid, signal.SIGKILL)            # no clean-up code runs
        proc.wait(10)
        deadline = time.monotonic() + 5
        while mine.acquire() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mine.fd is not None, "the lock outlived its holder"
        assert open(mine.path).read() == str(os.getpid())
        other = SessionLock(str(tmp_path / "s"))
        assert other.acquire() == os.getpid()        # a second owner in this process is refused
        mine.release()
        assert other.acquire() is None
        other.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
