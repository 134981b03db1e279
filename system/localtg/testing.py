"""Run the local Telegram as a subprocess for tests and benchmarks.

Why: tests in every part of tgfleet need a real server in its own process (so a client
library bug or a slow test cannot stall it, and so it can be killed like a real service).
`run_local_telegram` starts `python -m system.localtg` in its own process group, waits for
DATA_DIR/ready.json written by that exact PID, yields a handle, and on exit sends SIGTERM,
then SIGKILL after a grace period, to that PID only, and reaps it.

    with run_local_telegram(tmp_path, bots=2, users=1) as tg:
        tg.control.create_account("user")
        accounts = tg.accounts()          # parsed accounts.json "accounts"
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .control import ControlClient

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_test_rsa_key() -> str:
    """Path of an RSA private key reused by every test run on this machine (generating a
    2048-bit key takes seconds). It is a throwaway key for loopback tests only."""
    cache = Path(os.environ.get("LOCALTG_TEST_KEY_DIR") or (Path.home() / ".cache" / "tgfleet"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "localtg_test_rsa.pem"
    if not path.exists():
        import rsa

        _pub, priv = rsa.newkeys(2048, poolsize=1)
        tmp = path.with_suffix(".tmp.%d" % os.getpid())
        tmp.write_bytes(priv.save_pkcs1())
        os.replace(tmp, path)
    return str(path)


@dataclass
class LocalTelegramProcess:
    host: str
    port: int
    control_port: int
    pid: int
    data_dir: str
    accounts_path: str
    log_path: str
    control: ControlClient
    proc: subprocess.Popen = field(repr=False)

    def accounts_doc(self) -> dict:
        with open(self.accounts_path) as f:
            return json.load(f)

    def accounts(self) -> list:
        return self.accounts_doc()["accounts"]

    @property
    def rsa_public_key(self) -> str:
        return self.accounts_doc()["rsa_public_key"]


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGTERM when the parent dies."""
    from system.procguard import set_parent_death_signal
    set_parent_death_signal(signal.SIGTERM)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@contextlib.contextmanager
def run_local_telegram(tmp_dir, *, bots: int = 0, users: int = 0, seed_demo: bool = False,
                       flood_limits: bool = True, delay_ms: float = 0.0, jitter_ms: float = 0.0,
                       port: int = 0, control_port: int = 0, rsa_key_file: str | None = None,
                       reuse_test_key: bool = True, extra_args=(), startup_timeout: float = 60.0,
                       stop_grace: float = 10.0, log_level: str = "INFO", env: dict | None = None,
                       die_with_parent: bool = False):
    """Start a local Telegram subprocess with its state in TMP_DIR/localtg; yield a
    LocalTelegramProcess (host, port, control_port, pid, accounts_path, control, ...).

    bots/users/seed_demo: accounts (with provisioned keys) and demo chats to create.
    flood_limits, delay_ms, jitter_ms: as in LocalTelegram (changeable later via control).
    rsa_key_file / reuse_test_key: by default a cached test key is reused (fast start).
    extra_args: more CLI arguments. Server logs go to TMP_DIR/localtg.log.
    die_with_parent: the server gets SIGTERM when this process dies, even by SIGKILL (Linux
        parent-death signal): the launcher's embedded server must not outlive it.
    """
    data_dir = Path(tmp_dir) / "localtg"
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir / "ready.json"
    if ready.exists():
        ready.unlink()
    if rsa_key_file is None and reuse_test_key:
        rsa_key_file = shared_test_rsa_key()
    cmd = [sys.executable, "-m", "system.localtg", "--data-dir", str(data_dir), "--port", str(port),
           "--control-port", str(control_port), "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
           "--bots", str(bots), "--users", str(users), "--log-level", log_level]
    if not flood_limits:
        cmd.append("--no-flood-limits")
    if seed_demo:
        cmd.append("--seed-demo")
    if rsa_key_file:
        cmd += ["--rsa-key-file", str(rsa_key_file)]
    cmd += list(extra_args)
    log_path = Path(tmp_dir) / "localtg.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=full_env,
                                preexec_fn=_die_with_parent if die_with_parent else None)
    control = None
    try:
        deadline = time.monotonic() + startup_timeout
        info = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("local Telegram exited with %s; see %s:\n%s" % (
                    proc.returncode, log_path, log_path.read_text()[-3000:]))
            if ready.exists():
                try:
                    info = json.loads(ready.read_text())
                except ValueError:
                    info = None
                if info and info.get("pid") == proc.pid:
                    break
                info = None
            time.sleep(0.02)
        if info is None:
            raise TimeoutError("local Telegram not ready after %.0fs; see %s" % (startup_timeout, log_path))
        control = ControlClient(info["host"], info["control_port"])
        yield LocalTelegramProcess(host=info["host"], port=info["port"], control_port=info["control_port"],
                                   pid=proc.pid, data_dir=str(data_dir),
                                   accounts_path=str(data_dir / "accounts.json"), log_path=str(log_path),
                                   control=control, proc=proc)
    finally:
        if control is not None:
            control.close()
        _stop(proc, stop_grace)
