"""The local Telegram: an MTProto 2.0 server on 127.0.0.1 for tests, benchmarks and demos.

Real, unmodified Telethon and Pyrogram (kurigram) clients connect to it like to Telegram:
transports (abridged, intermediate, padded intermediate, full), the RSA/DH auth key exchange
with the project's own RSA key, or pre-provisioned auth keys; bot and user login; a world of
accounts, private chats, groups and channels with pushed updates, pts and getDifference;
Telegram's flood limits; a simulated network delay; SQLite persistence; an HTTP/JSON control
surface with a crowd of simulated users.

Modules, one job each:
    server.py          LocalTelegram: lifecycle, wiring, stats
    transport.py       framing and transport detection
    crypto.py          RSA key, DH group, message encryption, server msg ids
    handshake.py       the unencrypted auth key exchange
    connection.py      one client connection: decrypt, service messages, dispatch, output
    tlcodec.py         service-layer TL (rpc_result, containers, gzip, Bool, Vector)
    rpc/               RPC handlers per area (auth, users, updates, messages, media, chats)
    world.py           accounts, chats, messages, pts logs (in memory, authoritative)
    store.py           write-behind SQLite persistence with batched commits
    render.py          world -> TL objects as one account sees them
    hub.py             pushed updates to connected clients
    flood.py           Telegram's bot flood limits (FLOOD_WAIT_X)
    delay.py           per-connection timed queues for simulated network delay
    control_server.py  HTTP/JSON control surface;  control.py: its blocking client
    crowd.py           simulated users talking to bots at a rate
    accounts_file.py   accounts.json for clients written by anyone
    clients.py         point real Telethon / Pyrogram clients at a running server
    testing.py         run the server as a subprocess in tests and benchmarks
    __main__.py        `python -m system.localtg --help`
"""
