"""Point real, unmodified Telethon and Pyrogram (kurigram) clients at a running local Telegram.

Why: backends, tests and benchmarks in any process get a ready client from an accounts.json
entry plus the server's host/port, without knowing MTProto details. Nothing here changes
library code globally except the trusted RSA key registry of each library
(`register_rsa_key`), which both libraries expose for exactly this purpose.

How each library is pointed at 127.0.0.1:
- Telethon: a session (StringSession by default) with `set_dc(2, host, port)` and, when the
  account has a pre-provisioned key, `session.auth_key = AuthKey(key)` (no key exchange).
- Pyrogram/kurigram 2.2.26 keeps the DC address in its storage (`server_address`, `port`)
  but `Client.load_session` writes Telegram's own address into an empty session before the
  first key exchange. `LocalPyrogramClient` (a subclass, no monkeypatching) overrides only
  `load_session`: it opens the storage, writes the local host/port (every start), and for a
  provisioned account the auth key, user id and bot flag; for a fresh session it runs the
  library's own `Auth(...).create()` key exchange against the local server.

Logging in without a provisioned key: bots pass their token (Telethon `start(bot_token=)`,
Pyrogram `bot_token=`); users use the phone number and the fixed login code "22222"
(`telethon_start` / `pyrogram_client` do this for you).
"""
from __future__ import annotations

import os

from system.localtg.fingerprint import rsa_fingerprint

LOGIN_CODE = "22222"
DEFAULT_API_ID = 1
DEFAULT_API_HASH = "0123456789abcdef0123456789abcdef"

_registered: set = set()


def register_rsa_key(pem: str, libraries=("telethon", "pyrogram")) -> None:
    """Trust the local server's RSA public key (PKCS#1 PEM from accounts.json
    "rsa_public_key") in the given client LIBRARIES, so a fresh key exchange succeeds.

    A backend registers only its own library: importing the other one would cost every backend
    process ~40 MB and ~1 s for nothing. Idempotent per (key, library); call it once per process
    before any client without a provisioned key connects."""
    import rsa as _rsa
    key = None
    for library in libraries:
        if (pem, library) in _registered:
            continue
        if key is None:
            key = _rsa.PublicKey.load_pkcs1(pem.encode() if isinstance(pem, str) else pem)
        if library == "telethon":
            from telethon.crypto import rsa as t_rsa
            t_rsa.add_key(pem, old=False)
        elif library == "pyrogram":
            try:
                from pyrogram.crypto import rsa as p_rsa
            except ImportError:  # pyrogram is optional for telethon-only users
                continue
            p_rsa.server_public_keys[rsa_fingerprint(key.n, key.e)] = p_rsa.PublicKey(key.n, key.e)
        else:
            raise ValueError(f"register_rsa_key: unknown library {library!r}")
        _registered.add((pem, library))


def _auth_key(account: dict):
    hx = account.get("auth_key_hex")
    return bytes.fromhex(hx) if hx else None


# ---------------------------------------------------------------------- Telethon ----
def telethon_client(account: dict, host: str, port: int, api_id: int = DEFAULT_API_ID,
                    api_hash: str = DEFAULT_API_HASH, session=None, provisioned: bool = True, **kw):
    """A `telethon.TelegramClient` for `account` on the local Telegram at host:port.

    account: an entry of accounts.json (or ControlClient.create_account's result).
    host, port: the local Telegram's MTProto address.
    api_id, api_hash: any values; the local server does not check them.
    session: None -> a new in-memory StringSession; a telethon Session object -> used as is;
        a str -> path of a Telethon SQLite session file (persists entities and update state).
    provisioned: True -> use account["auth_key_hex"] (skips key exchange and login);
        False -> empty session: the client runs the real key exchange (register_rsa_key
        first) and must log in (see telethon_start).
    **kw: passed to TelegramClient (e.g. flood_sleep_threshold=0 to surface FloodWaitError,
        receive_updates=False, catch_up=True).
    """
    from telethon import TelegramClient
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession, StringSession

    if session is None:
        sess = StringSession()
    elif isinstance(session, (str, os.PathLike)):
        sess = SQLiteSession(str(session))
    else:
        sess = session
    sess.set_dc(2, host, int(port))
    key = _auth_key(account) if provisioned else None
    if key is not None and not sess.auth_key:
        sess.auth_key = AuthKey(key)
    return TelegramClient(sess, api_id, api_hash, **kw)


async def telethon_start(client, account: dict):
    """Start `client` and log in if needed: bots with their token, users with their phone
    and the fixed login code. Returns the client."""
    if account.get("kind") == "bot":
        return await client.start(bot_token=account["bot_token"])
    return await client.start(phone=account["phone"], code_callback=lambda: LOGIN_CODE)


# ---------------------------------------------------------------------- Pyrogram ----
def _local_client_class():
    import pyrogram
    from pyrogram.session.auth import Auth

    class LocalPyrogramClient(pyrogram.Client):
        """pyrogram.Client whose storage always points at the local Telegram (see module doc)."""

        def __init__(self, *args, localtg_host: str, localtg_port: int, localtg_key: bytes | None = None,
                     localtg_user_id: int | None = None, localtg_is_bot: bool | None = None, **kw):
            super().__init__(*args, **kw)
            self._ltg = (localtg_host, int(localtg_port), localtg_key, localtg_user_id, localtg_is_bot)

        async def load_session(self):
            host, port, key, user_id, is_bot = self._ltg
            s = self.storage
            await s.open()
            await s.server_address(host)
            await s.port(port)
            if await s.auth_key() is None:
                await s.dc_id(2)
                await s.api_id(self.api_id)
                await s.test_mode(False)
                await s.date(0)
                if key is not None:
                    await s.auth_key(key)
                    await s.user_id(user_id)
                    await s.is_bot(is_bot)
                else:
                    await s.auth_key(await Auth(self, 2, host, port, False).create())
                    await s.user_id(None)
                    await s.is_bot(None)
            elif not await s.api_id():
                await s.api_id(self.api_id)

    return LocalPyrogramClient


_CLASS = None


def pyrogram_client(account: dict, host: str, port: int, workdir: str | None = None, in_memory: bool | None = None,
                    provisioned: bool = True, name: str | None = None, api_id: int = DEFAULT_API_ID,
                    api_hash: str = DEFAULT_API_HASH, **kw):
    """A `pyrogram.Client` (LocalPyrogramClient) for `account` on the local Telegram.

    account: an entry of accounts.json (or ControlClient.create_account's result).
    host, port: the local Telegram's MTProto address.
    workdir: directory for a persistent session file NAME.session (keeps update state across
        stop/start, needed to recover missed updates); None -> in-memory session.
    in_memory: force in-memory (default: True when workdir is None).
    provisioned: True -> use account["auth_key_hex"], no key exchange or login;
        False -> fresh key exchange (call register_rsa_key first) and login with the bot
        token, or the phone number and the fixed code "22222".
    name: session name (default "acct<user_id>").
    **kw: passed to pyrogram.Client (e.g. sleep_threshold=0 to surface FloodWait,
        skip_updates=False to recover missed updates at start, no_updates=True,
        max_message_cache_size=100).
    """
    global _CLASS
    if _CLASS is None:
        _CLASS = _local_client_class()
    key = _auth_key(account) if provisioned else None
    is_bot = account.get("kind") == "bot"
    if in_memory is None:
        in_memory = workdir is None
    kw.setdefault("device_model", "localtg")
    if key is None:
        if is_bot:
            kw.setdefault("bot_token", account["bot_token"])
        else:
            kw.setdefault("phone_number", account["phone"])
            kw.setdefault("phone_code", LOGIN_CODE)
    if workdir is not None:
        kw["workdir"] = str(workdir)
    return _CLASS(name or "acct%d" % account["user_id"], api_id=api_id, api_hash=api_hash, in_memory=in_memory,
                  localtg_host=host, localtg_port=port, localtg_key=key, localtg_user_id=account["user_id"],
                  localtg_is_bot=is_bot, **kw)
