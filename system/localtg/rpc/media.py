"""Uploads and media messages: upload.saveFilePart / saveBigFilePart / getFile,
messages.uploadMedia / sendMedia / sendMultiMedia.

Why: forwarding bots move photos, documents and albums. Uploaded parts are kept in memory
per (account, file id) until a send assembles them; the file is written under
DATA_DIR/files/ and described by a small dict stored with the message (kind, id,
access_hash, size, mime, name), which render.py turns into Photo / Document objects.
An album is several messages sharing one random grouped_id. Files can be downloaded back
with upload.getFile. Thumbnails and real image dimensions are not computed.
"""
from __future__ import annotations

import os
import time

from telethon.tl import functions as F
from telethon.tl import types as T

from ..tlcodec import tl_bool
from ..world import WorldError
from .base import rpc
from .messages import entities_in, reply_id, sent_result

MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # all pending parts together


def _save_part(ctx, file_id, part, data):
    ups = ctx.server.uploads
    key = (ctx.user_id, file_id)
    if len(data) > 512 * 1024 or part < 0 or part > 8000:
        raise WorldError(400, "FILE_PART_INVALID")
    if ctx.server.upload_bytes + len(data) > MAX_UPLOAD_BYTES:
        raise WorldError(400, "FILE_PARTS_INVALID")
    parts = ups.setdefault(key, {})
    old = parts.get(part)
    parts[part] = data
    ctx.server.upload_bytes += len(data) - (len(old) if old else 0)
    return tl_bool(True)


@rpc(F.upload.SaveFilePartRequest)
def save_file_part(ctx, req):
    return _save_part(ctx, req.file_id, req.file_part, req.bytes)


@rpc(F.upload.SaveBigFilePartRequest)
def save_big_file_part(ctx, req):
    return _save_part(ctx, req.file_id, req.file_part, req.bytes)


def _assemble(ctx, input_file) -> bytes:
    key = (ctx.user_id, input_file.id)
    parts = ctx.server.uploads.pop(key, None)
    if parts is None or len(parts) != input_file.parts or any(i not in parts for i in range(input_file.parts)):
        if parts is not None:
            ctx.server.uploads[key] = parts
        raise WorldError(400, "FILE_PARTS_INVALID")
    data = b"".join(parts[i] for i in range(input_file.parts))
    ctx.server.upload_bytes -= len(data)
    return data


def _store_file(ctx, data: bytes, kind: str, **extra) -> dict:
    w = ctx.world
    fid = w.new_file_id()
    path = os.path.join(w.files_dir, "%d" % fid)
    with open(path, "wb") as f:
        f.write(data)
    media = {"kind": kind, "id": fid, "access_hash": int.from_bytes(os.urandom(7), "little"),
             "size": len(data), "date": int(time.time())}
    media.update(extra)
    ctx.server.media_by_id[fid] = media
    return media


def resolve_input_media(ctx, media) -> dict:
    if isinstance(media, T.InputMediaUploadedPhoto):
        return _store_file(ctx, _assemble(ctx, media.file), "photo", w=800, h=600)
    if isinstance(media, T.InputMediaUploadedDocument):
        name = getattr(media.file, "name", None) or "file"
        for a in media.attributes or ():
            if isinstance(a, T.DocumentAttributeFilename):
                name = a.file_name
        return _store_file(ctx, _assemble(ctx, media.file), "document", mime=media.mime_type or
                           "application/octet-stream", name=name)
    if isinstance(media, (T.InputMediaPhoto, T.InputMediaDocument)):
        ref = media.id
        known = ctx.server.media_by_id.get(getattr(ref, "id", None))
        want = "photo" if isinstance(media, T.InputMediaPhoto) else "document"
        if known is None or known["kind"] != want:
            raise WorldError(400, "MEDIA_INVALID")
        return dict(known)
    raise WorldError(400, "MEDIA_INVALID")


@rpc(F.messages.UploadMediaRequest)
def upload_media(ctx, req):
    ctx.peer(req.peer)
    return ctx.render.media(resolve_input_media(ctx, req.media))


@rpc(F.messages.SendMediaRequest)
def send_media(ctx, req):
    kind, ident = ctx.peer(req.peer)
    ctx.check_flood(kind, ident)
    media = resolve_input_media(ctx, req.media)
    m, pts = ctx.world.post_message(ctx.user_id, kind, ident, req.message or "", media=media,
                                    reply_to=reply_id(req.reply_to), origin=ctx.conn,
                                    entities=entities_in(ctx, req.entities))
    return sent_result(ctx, [(m, pts, req.random_id)])


@rpc(F.messages.SendMultiMediaRequest)
def send_multi_media(ctx, req):
    kind, ident = ctx.peer(req.peer)
    if not req.multi_media or len(req.multi_media) > 10:
        raise WorldError(400, "MULTI_MEDIA_TOO_LONG" if req.multi_media else "MEDIA_EMPTY")
    ctx.check_flood(kind, ident, n=len(req.multi_media))
    medias = [resolve_input_media(ctx, s.media) for s in req.multi_media]
    gid = int.from_bytes(os.urandom(7), "little")
    items = []
    for single, media in zip(req.multi_media, medias):
        m, pts = ctx.world.post_message(ctx.user_id, kind, ident, single.message or "", media=media,
                                        grouped_id=gid, reply_to=reply_id(req.reply_to), origin=ctx.conn,
                                        entities=entities_in(ctx, single.entities))
        items.append((m, pts, single.random_id))
    return sent_result(ctx, items)


@rpc(F.upload.GetFileRequest)
def get_file(ctx, req):
    loc = req.location
    if not isinstance(loc, (T.InputPhotoFileLocation, T.InputDocumentFileLocation)):
        raise WorldError(400, "LOCATION_INVALID")
    media = ctx.server.media_by_id.get(loc.id)
    if media is None:
        raise WorldError(400, "FILE_ID_INVALID")
    limit = max(0, min(req.limit, 1024 * 1024))
    with open(os.path.join(ctx.world.files_dir, "%d" % loc.id), "rb") as f:
        f.seek(max(0, req.offset))
        data = f.read(limit)
    ftype = T.storage.FileJpeg() if media["kind"] == "photo" else T.storage.FileUnknown()
    return T.upload.File(type=ftype, mtime=media.get("date", 0), bytes=data)
