"""Telegram-side conversation: updates that backends turn into messages, and the actions bots
ask backends to perform.

Why plain frozen dataclasses: they are pickled by thespian between actor processes, matched by
type in `receiveMessage`, and must never carry a library object (a Telethon `Message` or a
Pyrogram `Client`) across a process boundary. Chat ids are "marked" ids as both Telethon and
Pyrogram use them: users positive, basic groups negative, channels/supergroups -100... .
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from messages import fastpickle


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Enough to re-send or forward a media item without holding the library object."""
    kind: str                 # 'photo' | 'document'
    file_id: str = ""         # library-specific opaque reference (may be empty)
    file_name: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One new message seen by an account. `update_id` is the dedup key (chat:message)."""
    bot: str                  # name of the bot (account) that received it
    update_id: str
    chat_id: int
    chat_kind: str            # 'private' | 'group' | 'channel'
    message_id: int
    sender_id: int
    text: str = ""
    date: float = 0.0         # message date as Telegram gives it (unix seconds)
    received_at: float = 0.0  # time.time() when the backend saw it (end-to-end latency start)
    reply_to: Optional[int] = None
    media: Optional[MediaRef] = None
    grouped_id: Optional[int] = None
    fwd_from: Optional[int] = None
    outgoing: bool = False
    sender_username: str = ""
    # (scope, pts): the update state from which the library's catch-up (GetDifference) fetches
    # this update again; scope 0 is the account's common pts, else a channel id. None when the
    # library does not resume from a saved state. The backend never saves a state past an
    # update its bot has not finished (`system.resume`).
    resume: Optional[tuple] = None


def update_key(update) -> str:
    """An update's identity: its dedup key in the bot, and what the bot acknowledges to its
    backend when the update is finished (`messages.backend.UpdatesDone`)."""
    return update.update_id or f"{update.chat_id}:{update.message_id}"


@dataclass(frozen=True, slots=True)
class UpdateBatch:
    """Backend -> bot: updates are shipped in batches so a hop costs one message, not N."""
    bot: str
    updates: tuple            # tuple[IncomingMessage, ...]


# ---- actions: what a handler returns; the bot hands them to its backend -------------------

@dataclass(frozen=True, slots=True)
class Action:
    """Base of every action. `origin` is the update_id that caused it (for tracing and dedup);
    `received_at` carries the update's arrival time so the backend can observe end-to-end
    latency when the action is confirmed sent."""
    origin: str = ""
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SendText(Action):
    chat_id: int = 0
    text: str = ""
    reply_to: Optional[int] = None


@dataclass(frozen=True, slots=True)
class SendMedia(Action):
    chat_id: int = 0
    media: Optional[MediaRef] = None
    caption: str = ""
    reply_to: Optional[int] = None


@dataclass(frozen=True, slots=True)
class ForwardMessages(Action):
    """Forward one message or a whole media group (several ids, one call) from one chat."""
    from_chat_id: int = 0
    message_ids: tuple = ()
    to_chat_id: int = 0


@dataclass(frozen=True, slots=True)
class EditText(Action):
    chat_id: int = 0
    message_id: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class DeleteMessages(Action):
    chat_id: int = 0
    message_ids: tuple = ()


@dataclass(frozen=True, slots=True)
class Publish(Action):
    """Publish an event to the event bus topic (inter-bot events); never reaches Telegram."""
    topic: str = ""
    payload: dict = field(default_factory=dict)


def action_chat(action: Action) -> Optional[int]:
    """The chat an action sends into (the rate limiter's per-chat key), None for non-sends."""
    if isinstance(action, (SendText, SendMedia, EditText, DeleteMessages)):
        return action.chat_id
    if isinstance(action, ForwardMessages):
        return action.to_chat_id
    return None


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work
