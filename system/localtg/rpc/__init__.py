"""RPC handlers, one module per area; importing this package registers them all."""
from . import auth, chats, media, messages, updates, users  # noqa: F401  (registration side effects)
from .base import Ctx, Dispatcher, REGISTRY, rpc  # noqa: F401
