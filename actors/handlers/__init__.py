"""Message handlers: the per-bot business logic, as plain classes that return actions.

`load_handler(spec, config)` builds one from a fleet config entry: either a builtin name
('echo', 'autoreply', 'forward', 'relay') or a custom class given as 'package.module:ClassName'
or 'package.module.ClassName', which must subclass `Handler`. Errors are ValueErrors that say
what was wrong, so a bad fleet config fails at start-up with a readable message.
"""
from __future__ import annotations

import importlib

from .autoreply import AutoReplyHandler
from .base import Handler, HandlerContext, caused_by
from .echo import EchoHandler
from .forward import ForwardHandler
from .relay import RelayHandler

BUILTIN: dict[str, type[Handler]] = {
    "echo": EchoHandler,
    "autoreply": AutoReplyHandler,
    "forward": ForwardHandler,
    "relay": RelayHandler,
}

__all__ = ["BUILTIN", "Handler", "HandlerContext", "caused_by", "load_handler", "resolve_handler",
           "EchoHandler", "AutoReplyHandler", "ForwardHandler", "RelayHandler"]


def resolve_handler(spec: str) -> type[Handler]:
    """The Handler class named by `spec` (builtin name or dotted path)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"handler spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    elif "." in spec:
        module_name, _, attr = spec.rpartition(".")
    else:
        raise ValueError(f"unknown handler {spec!r}: not a builtin ({', '.join(sorted(BUILTIN))})"
                         f" and not a dotted path 'package.module:ClassName'")
    if not module_name or not attr:
        raise ValueError(f"bad handler path {spec!r}: expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"handler {spec!r}: cannot import module {module_name!r}: {exc}") \
            from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f"handler {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not isinstance(cls, type) or not issubclass(cls, Handler):
        raise ValueError(f"handler {spec!r}: {attr!r} is not a subclass of "
                         f"actors.handlers.base.Handler")
    return cls


def load_handler(spec: str, config: dict | None = None) -> Handler:
    """Instantiate the handler named by `spec` with `config` (see module docstring)."""
    return resolve_handler(spec)(config if config is not None else {})
