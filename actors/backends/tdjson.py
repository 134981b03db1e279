"""Thin ctypes wrapper of TDLib's JSON interface (td_create_client_id / td_send / td_receive /
td_execute), plus `TdJsonLike`, the four-method protocol a fake can implement.

Why our own wrapper instead of python-telegram's `TDJson`: that class drives the legacy
one-client `td_json_client_*` API and blocks a thread per client; the client-id API lets one
process host many TDLib clients behind a single receive loop (see `tdlib_session`). We only
borrow python-telegram's bundled `libtdjson.so`.

Why nothing here starts a network connection: loading the library and `execute` are local;
TDLib only starts talking to Telegram once a request is `send`-ed to a client. Still, load the
real library only where the network is what you intend (tests run it in a loopback-only network
namespace).

Thread-safety (TDLib's own rules): `send` and `execute` may be called from any thread;
`receive` is process-wide (it returns events of every client, tagged with "@client_id") and must
never be called from two threads at once, so exactly one receive loop per process may use it.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
from typing import Optional, Protocol, runtime_checkable

log = logging.getLogger(__name__)

TDLIB_PATH_ENV = "PYTHON_TELEGRAM_TDLIB_PATH"


@runtime_checkable
class TdJsonLike(Protocol):
    """What a TDLib session needs from the JSON interface; the real `TdJson` and the tests'
    `FakeTdJson` both provide it. Every event returned by `receive` carries "@client_id"."""

    def create_client_id(self) -> int: ...

    def send(self, client_id: int, request: dict) -> None: ...

    def receive(self, timeout: float) -> Optional[dict]: ...

    def execute(self, request: dict) -> Optional[dict]: ...


def find_tdjson_library() -> str:
    """Path of the libtdjson to load: $PYTHON_TELEGRAM_TDLIB_PATH if set, else the copy bundled
    in the python-telegram wheel (located without importing the package)."""
    env_path = os.environ.get(TDLIB_PATH_ENV)
    if env_path:
        if not os.path.isfile(env_path):
            raise FileNotFoundError(f"{TDLIB_PATH_ENV}={env_path!r} is not a file")
        return env_path
    spec = importlib.util.find_spec("telegram")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = os.path.join(location, "lib", "libtdjson.so")
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"no libtdjson: {TDLIB_PATH_ENV} is unset and python-telegram's bundled "
        f"telegram/lib/libtdjson.so was not found (searched {locations})")


class TdJson:
    """The real JSON interface of one loaded libtdjson.

    `receive_key` names the process-wide receive queue this object reads: two `TdJson` objects
    over the same library file share it, so `tdlib_session` keeps one receive loop for both.
    `log_verbosity` is applied at load time through `setLogVerbosityLevel` (1 = errors only;
    TDLib's default floods stderr with per-request logs).
    """

    def __init__(self, library_path: Optional[str] = None, log_verbosity: int = 1) -> None:
        self.library_path = os.path.realpath(library_path or find_tdjson_library())
        self.receive_key = ("libtdjson", self.library_path)
        lib = ctypes.CDLL(self.library_path)

        self._create_client_id = lib.td_create_client_id
        self._create_client_id.restype = ctypes.c_int
        self._create_client_id.argtypes = []

        self._send = lib.td_send
        self._send.restype = None
        self._send.argtypes = [ctypes.c_int, ctypes.c_char_p]

        # c_char_p copies the returned C string into bytes at once: TDLib only keeps the buffer
        # valid until the next receive/execute call.
        self._receive = lib.td_receive
        self._receive.restype = ctypes.c_char_p
        self._receive.argtypes = [ctypes.c_double]

        self._execute = lib.td_execute
        self._execute.restype = ctypes.c_char_p
        self._execute.argtypes = [ctypes.c_char_p]

        self._lib = lib
        answer = self.execute({"@type": "setLogVerbosityLevel",
                               "new_verbosity_level": int(log_verbosity)})
        if not answer or answer.get("@type") != "ok":
            log.warning("setLogVerbosityLevel(%s) answered %r", log_verbosity, answer)

    def create_client_id(self) -> int:
        """A new TDLib client; it stays silent until the first request is sent to it."""
        return int(self._create_client_id())

    def send(self, client_id: int, request: dict) -> None:
        self._send(int(client_id), _encode(request))

    def receive(self, timeout: float) -> Optional[dict]:
        """Next event of any client, or None after `timeout` seconds. One thread only."""
        return _decode(self._receive(float(timeout)))

    def execute(self, request: dict) -> Optional[dict]:
        """Run a synchronous TDLib method (e.g. setLogVerbosityLevel, getTextEntities)."""
        return _decode(self._execute(_encode(request)))


def _encode(request: dict) -> bytes:
    return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _decode(raw: Optional[bytes]) -> Optional[dict]:
    if not raw:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.error("undecodable TDLib answer (%s): %r", exc, raw[:200])
        return None
    if not isinstance(value, dict):
        log.error("TDLib answer is not an object: %r", value)
        return None
    return value
