"""Login and configuration: auth.*, help.getConfig, help.getNearestDc.

Why: clients must log in exactly as on Telegram. Bots import a bot token; users ask for a
code and sign in with it. The code is deterministic, like on Telegram's test DCs: the DC
number repeated five times ("22222"). A phone number the world does not know is registered
on the fly at sign-in (documented shortcut: no separate sign-up step needed). The config's
DC options all point at this server, so no client ever looks for another address.
"""
from __future__ import annotations

import secrets
import time

from telethon.tl import functions as F
from telethon.tl import types as T

from ..world import World, WorldError, _norm_phone
from .base import rpc


def _authorize(ctx, user_id: int):
    ctx.world.bind_key(ctx.conn.key_id, user_id)
    ctx.user_id = user_id
    ctx.server.hub.register(ctx.conn)
    ctx.server.accounts_file_dirty()
    return T.auth.Authorization(user=ctx.render.user_obj(user_id, user_id))


@rpc(F.auth.ImportBotAuthorizationRequest, auth=False)
def import_bot_authorization(ctx, req):
    uid = ctx.world.by_token.get(req.bot_auth_token)
    if uid is None:
        raise WorldError(400, "ACCESS_TOKEN_INVALID")
    return _authorize(ctx, uid)


@rpc(F.auth.SendCodeRequest, auth=False)
def send_code(ctx, req):
    phone = _norm_phone(req.phone_number)
    if not phone:
        raise WorldError(400, "PHONE_NUMBER_INVALID")
    ctx.server.phone_codes[phone] = h = secrets.token_hex(8)
    return T.auth.SentCode(type=T.auth.SentCodeTypeApp(length=len(World.LOGIN_CODE)),
                           phone_code_hash=h, timeout=120)


@rpc(F.auth.ResendCodeRequest, auth=False)
def resend_code(ctx, req):
    return send_code(ctx, req)


@rpc(F.auth.SignInRequest, auth=False)
def sign_in(ctx, req):
    phone = _norm_phone(req.phone_number)
    if ctx.server.phone_codes.get(phone) != req.phone_code_hash:
        raise WorldError(400, "PHONE_CODE_EXPIRED")
    if req.phone_code != World.LOGIN_CODE:
        raise WorldError(400, "PHONE_CODE_INVALID")
    a = ctx.world.login_phone(phone)
    return _authorize(ctx, a.user_id)


@rpc(F.auth.SignUpRequest, auth=False)
def sign_up(ctx, req):
    a = ctx.world.login_phone(req.phone_number)
    return _authorize(ctx, a.user_id)


@rpc(F.auth.LogOutRequest)
def log_out(ctx, req):
    ctx.server.hub.unregister(ctx.conn)
    ctx.world.bind_key(ctx.conn.key_id, None)
    return T.auth.LoggedOut()


def config(host: str, port: int):
    now = int(time.time())
    dcs = [T.DcOption(id=i, ip_address=host, port=port) for i in (1, 2, 3, 4, 5)]
    dcs += [T.DcOption(id=2, ip_address=host, port=port, media_only=True)]
    return T.Config(
        date=now, expires=now + 3600, test_mode=False, this_dc=2, dc_options=dcs,
        dc_txt_domain_name="localtg.invalid", chat_size_max=200, megagroup_size_max=200000,
        forwarded_count_max=100, online_update_period_ms=210000, offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30000, online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000,
        notify_default_delay_ms=1500, push_chat_period_ms=60000, push_chat_limit=2,
        edit_time_limit=172800, revoke_time_limit=2147483647, revoke_pm_time_limit=2147483647,
        rating_e_decay=2419200, stickers_recent_limit=200, channels_read_media_period=604800,
        call_receive_timeout_ms=20000, call_ring_timeout_ms=90000, call_connect_timeout_ms=30000,
        call_packet_timeout_ms=10000, me_url_prefix="https://t.me/", caption_length_max=1024,
        message_length_max=4096, webfile_dc_id=2)


@rpc(F.help.GetConfigRequest, auth=False)
def get_config(ctx, req):
    return config(ctx.server.host, ctx.server.port)


@rpc(F.help.GetNearestDcRequest, auth=False)
def get_nearest_dc(ctx, req):
    return T.NearestDc(country="ZZ", this_dc=2, nearest_dc=2)
