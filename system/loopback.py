"""Keep thespian's listening sockets on loopback.

thespian's TCP transport binds every "external" address to '' (all interfaces), and anything that
reaches its ports is unpickled: whoever can connect can run code as the service. We bind to
127.0.0.1 unless the operator configures another host (multi-host conventions), by adjusting the
bind address that `IPActorAddress.bindArgs` reports. This runs in the launcher before the admin
is forked, so the admin and every actor process inherit it.
"""
from __future__ import annotations

import os

BIND_ENV = "TGFLEET_BIND_HOST"
_patched = False


def bind_loopback(host: str = "127.0.0.1") -> None:
    global _patched
    os.environ[BIND_ENV] = host
    # thespian otherwise probes a public address to pick its own "external" IP.
    os.environ.setdefault("THESPIAN_BASE_IPADDR", host)
    if _patched:
        return
    from thespian.system.transport import IPBase

    original = IPBase.IPActorAddress.bindArgs

    def bindArgs(self):  # noqa: N802 - thespian's name
        (name,) = original.fget(self)
        if isinstance(name, tuple) and name and name[0] == "":
            name = (os.environ.get(BIND_ENV, "127.0.0.1"),) + tuple(name[1:])
        return (name,)

    IPBase.IPActorAddress.bindArgs = property(bindArgs)
    _patched = True
