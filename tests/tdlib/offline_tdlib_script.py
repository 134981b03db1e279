"""Drive the REAL libtdjson through TdlibSession, offline. Run ONLY inside a network namespace
that has nothing but loopback (test_tdlib_real_offline.py starts it under `unshare -n`).

Why the checks come first: TDLib starts dialing Telegram as soon as a client is set up. Before
the library is even loaded this script verifies that the namespace has no route (IPv4 or
IPv6), no interface but `lo`, and that a connect to a TEST-NET address fails with "network
unreachable"; if any check fails it prints the reason and exits 3 without loading TDLib.

Output: progress on stderr, then one line `RESULT {json}` on stdout for the test to assert on.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def network_refusal() -> str:
    """Why this process must not load TDLib ('' when the namespace is loopback-only)."""
    for cmd in (["ip", "route", "show"], ["ip", "-6", "route", "show"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        if out.returncode != 0 or out.stdout.strip():
            return f"{' '.join(cmd)} -> rc={out.returncode} {out.stdout.strip()!r}"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           timeout=5)
    names = [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()
             if line.strip()]
    if links.returncode != 0 or names != ["lo"]:
        return f"interfaces besides lo: {names} (rc={links.returncode})"
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        code = probe.connect_ex(("198.51.100.1", 443))   # TEST-NET-2, documentation only
    finally:
        probe.close()
    if code != errno.ENETUNREACH:
        return f"connect to 198.51.100.1 gave {errno.errorcode.get(code, code)}, not ENETUNREACH"
    return ""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return -1.0


class Events:
    """on_event sink with timestamps relative to the session start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.items: list[tuple[float, str, object]] = []
        self.cond = threading.Condition()

    def __call__(self, kind, payload) -> None:
        with self.cond:
            self.items.append((round(time.monotonic() - self.t0, 4), kind, payload))
            self.cond.notify_all()

    def wait(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, kind, payload in self.items:
                    if predicate(kind, payload):
                        return at, payload
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                self.cond.wait(left)

    def of(self, kind: str) -> list:
        with self.cond:
            return [(at, p) for at, k, p in self.items if k == kind]


def main() -> int:
    refusal = network_refusal()
    if refusal:
        print("RESULT " + json.dumps({"refused": refusal}), flush=True)
        return 3
    sys.path.insert(0, REPO)
    from actors.backends.tdjson import TdJson
    from actors.backends.tdlib_session import TdlibSession

    result: dict = {"refused": "", "pid": os.getpid(), "rss_mb_before_load": rss_mb()}
    started = time.monotonic()
    tdjson = TdJson()
    result["load_s"] = round(time.monotonic() - started, 3)
    result["rss_mb_library_loaded"] = rss_mb()
    data_dir = tempfile.mkdtemp(prefix="tgfleet-td-offline-")
    events = Events()
    # Dummy credentials: offline they are only checked for being present.
    account = {"name": "offline", "bot_token": "123456:offline-test-token"}
    session = TdlibSession(tdjson, account, data_dir, events, api_id=12345,
                           api_hash="0" * 32)
    try:
        at, _ = events.wait(lambda k, p: k == "auth_state"
                            and p == "authorizationStateWaitPhoneNumber", 10)
        result["wait_phone_number_at_s"] = at
        at, _ = events.wait(lambda k, p: k == "connection", 10)
        result["first_connection_at_s"] = at
        time.sleep(1.5)                   # let the connection state settle (or not)

        sent = time.monotonic()
        probe_id = session.probe()
        _, probe = events.wait(lambda k, p: k == "result" and p[0] == probe_id, 5)
        result["probe"] = probe[1] if probe else None
        result["probe_s"] = round(time.monotonic() - sent, 4)

        # Before login TDLib parses each request, then refuses it with 401: a 400 here would
        # mean our request JSON does not match TDLib's schema.
        shapes = {"sendMessage": session.send_text(777, "x", reply_to=5 << 20),
                  "forwardMessages": session.forward(777, [1 << 20], 778),
                  "editMessageText": session.edit_text(777, 1 << 20, "y"),
                  "deleteMessages": session.delete(777, [1 << 20])}
        result["request_shapes"] = {}
        for name, request_id in shapes.items():
            _, err = events.wait(lambda k, p, r=request_id: k == "error"
                                 and p.get("request_id") == r, 5)
            result["request_shapes"][name] = err
        result["rss_mb_one_client"] = rss_mb()
        result["auth_states_before_close"] = [p for _, p in events.of("auth_state")]
        result["connection_states"] = events.of("connection")
        result["thread_alive_before_close"] = session.receive_thread.is_alive()

        sent = time.monotonic()
        result["recycled"] = session.recycle(timeout=10)
        result["recycle_s"] = round(time.monotonic() - sent, 4)
        at, _ = events.wait(lambda k, p: k == "auth_state"
                            and p == "authorizationStateWaitPhoneNumber"
                            and len([s for _, s in events.of("auth_state")
                                     if s == "authorizationStateWaitPhoneNumber"]) == 2, 10)
        result["wait_phone_number_after_recycle_at_s"] = at
        result["rss_mb_after_recycle"] = rss_mb()

        thread = session.receive_thread
        sent = time.monotonic()
        result["closed"] = session.close(timeout=10)
        result["close_s"] = round(time.monotonic() - sent, 4)
        result["thread_alive_after_close"] = thread.is_alive()
        result["auth_states"] = [p for _, p in events.of("auth_state")]
        result["errors"] = [p for _, p in events.of("error")]
        result["rss_mb_after_close"] = rss_mb()
    finally:
        if session.client_id is not None:
            session.close(timeout=5)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
