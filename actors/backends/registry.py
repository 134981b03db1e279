"""Which actor class runs a session of each client library.

Why dotted paths and not classes: supervisors create actors by class path (thespian needs a
path importable in every process), and importing a backend module imports its library
(Telethon, Pyrogram, TDLib's wrapper), which only the process that runs it should pay for.
"""
from __future__ import annotations

BACKENDS = {
    "telethon": "actors.backends.telethon_backend.TelethonBackend",
    "pyrogram": "actors.backends.pyrogram_backend.PyrogramBackend",
    "tdlib": "actors.backends.tdlib_backend.TdlibBackend",
}


def backend_class(library: str) -> str:
    """The actor class path for `library`; ValueError naming the choices otherwise."""
    try:
        return BACKENDS[library]
    except KeyError:
        raise ValueError(f"unknown client library {library!r}; choose one of "
                         f"{sorted(BACKENDS)}") from None
