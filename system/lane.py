"""Lanes: a direct stream between a bot and its backend when they live in separate processes.

Why: on the processes base every thespian message between two actors costs the TCP transport
a connection step, a pickled envelope, an acknowledgement and a rebuilt select set (~2,000
round trips/s between two actor processes here, roughly a quarter of a millisecond of CPU per
message on each side), and under load its queues are scanned per message
(so a busy fleet gets slower the busier it is). A reply crosses the bot <-> backend boundary
three times (UpdateBatch, ActionBatch, ActionResults). A lane carries exactly those three over a
Unix stream socket: length-prefixed pickles, read in bulk whenever the descriptor is readable
(thespian watches it through `ThespianWatch`, like a bridge), so a burst costs one wake-up.

What stays the same: the two sides are still separate actors; a lane is only a faster wire for
messages the receiver handles with the same `on_<Message>` handlers, in order. Everything else
(control, state, attach/detach, probes) still goes through thespian. If a lane breaks, its
messages go through thespian again; nothing waits for a lane.

Safety: the listening socket is in the abstract namespace (no file to clean up), and whoever
connects must first send the random token the backend gave its bot through thespian; anything
else closes the connection before a single frame is unpickled.
"""
from __future__ import annotations

import hmac
import pickle
import secrets
import socket
import struct

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024          # one message; a longer header means a broken peer
MAX_BACKLOG = 64 * 1024 * 1024        # bytes waiting to be written before the lane gives up
# At most this much is read per `receive()`: the descriptor is watched level-triggered, so what
# is left wakes the actor again after thespian has delivered whatever queued meanwhile (probes,
# grants). Reading a firehose until it runs dry would starve them for as long as it flows.
RECV_CHUNK = 64 * 1024
HELLO = b"tgfleet-lane-1 "            # + token (32 hex) + " " + bot name; never unpickled


class LaneError(OSError):
    """The lane is unusable (closed, refused, broken peer); the caller falls back."""


class Lane:
    """One end of a connected lane. Single-threaded: used only by its owning actor."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self.closed = False
        # False on the accepting side until the hello checked out: the first frame is then
        # handed over as raw bytes, never unpickled.
        self.verified = True
        self._chunk = bytearray(RECV_CHUNK)   # reused: no large allocation per read

    # ---- writing ------------------------------------------------------------------------
    def send(self, msg) -> bool:
        """Queue MSG and write as much as the socket takes now; False if the lane is broken
        (the caller then sends MSG another way)."""
        if self.closed:
            return False
        return self.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def send_bytes(self, data: bytes) -> bool:
        if self.closed:
            return False
        if len(data) > MAX_FRAME:
            return False
        self._wbuf += HEADER.pack(len(data))
        self._wbuf += data
        if len(self._wbuf) > MAX_BACKLOG:
            self.close()
            return False
        self.flush()
        return not self.closed

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left."""
        while self._wbuf and not self.closed:
            try:
                n = self.sock.send(self._wbuf)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.close()
                return False
            del self._wbuf[:n]
        return not self._wbuf

    @property
    def pending(self) -> int:
        return len(self._wbuf)

    # ---- reading ------------------------------------------------------------------------
    def receive(self) -> list:
        """The complete messages among what has arrived (one read of at most RECV_CHUNK bytes),
        in order. Sets `closed` on EOF or a broken frame (what came before it is still
        returned)."""
        view = memoryview(self._chunk)
        if not self.closed:
            try:
                n = self.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                n = None
            except OSError:
                self.close()
                n = None
            if n == 0:
                self.close()
            elif n:
                self._rbuf += view[:n]
        out = []
        buf = self._rbuf
        pos = 0
        while len(buf) - pos >= HEADER.size and self.verified is not None:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > MAX_FRAME or (self.verified is False and size > 1024):
                self.close()
                break
            if len(buf) - pos - HEADER.size < size:
                break
            start = pos + HEADER.size
            frame = bytes(buf[start:start + size])
            pos = start + size
            if self.verified is False:
                out.append(frame)         # the hello: checked by the listener, raw
                self.verified = None      # nothing more is read until it is checked
                break
            try:
                out.append(pickle.loads(frame))
            except Exception:     # a frame that does not unpickle: the peer is broken
                self.close()
                break
        del buf[:pos]
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class LaneListener:
    """The backend's end: accepts its bot's connection, checks the token, hands out Lanes."""

    def __init__(self):
        self.token = secrets.token_hex(16)
        self.address = f"\0tgfleet-lane-{secrets.token_hex(8)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.address)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.unverified: dict[int, Lane] = {}    # fd -> lane whose hello has not come yet

    def accept(self) -> list[Lane]:
        """New connections (not yet verified); call when `fd` is readable."""
        lanes = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            lane = Lane(conn)
            lane.verified = False
            self.unverified[lane.fd] = lane
            lanes.append(lane)
        return lanes

    def verify(self, lane: Lane) -> tuple[str, list] | None:
        """Read an unverified lane: (bot name, messages after the hello) once the right token
        came first; None while waiting. A wrong hello closes the lane (LaneError)."""
        msgs = lane.receive()
        if not msgs:
            if lane.closed:
                self.unverified.pop(lane.fd, None)
                raise LaneError("lane closed before its hello")
            return None
        hello = msgs[0]
        self.unverified.pop(lane.fd, None)
        token = self.token.encode()
        ok = (isinstance(hello, bytes) and hello.startswith(HELLO)
              and hmac.compare_digest(hello[len(HELLO):len(HELLO) + len(token)], token)
              and hello[len(HELLO) + len(token):len(HELLO) + len(token) + 1] == b" ")
        if not ok:
            lane.close()
            raise LaneError("lane refused: wrong hello")
        name = hello[len(HELLO) + len(token) + 1:].decode("utf-8", "replace")
        lane.verified = True
        return name, lane.receive()

    def close(self) -> None:
        for lane in self.unverified.values():
            lane.close()
        self.unverified.clear()
        try:
            self.sock.close()
        except OSError:
            pass


FLUSH_RETRY_S = 0.002


def send_via(actor, lane: Lane | None, msg, address, on_broken) -> bool:
    """Send MSG from ACTOR over LANE, or through thespian to ADDRESS when there is no usable
    lane (`on_broken()` first forgets a lane that just failed). A write the socket could not
    take at once is finished by the actor's "lane_flush" timer (see `flush_or_retry`).
    True when the lane carried it."""
    if lane is not None and lane.send(msg):
        if lane.pending:
            actor.after("lane_flush", FLUSH_RETRY_S)
        return True
    if lane is not None:
        on_broken()
    actor.send(address, msg)
    return False


def flush_or_retry(actor, lane: Lane | None, on_broken) -> None:
    """The "lane_flush" timer: write what is pending, again later if the socket is full."""
    if lane is None or lane.flush():
        return
    if lane.closed:
        on_broken()
    else:
        actor.after("lane_flush", FLUSH_RETRY_S)


def connect(address: str, token: str, name: str, timeout: float = 1.0) -> Lane:
    """The bot's end: connect and say hello (the token proves who we are)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError as exc:
        sock.close()
        raise LaneError(f"cannot connect the lane: {exc}") from exc
    lane = Lane(sock)
    if not lane.send_bytes(HELLO + token.encode() + b" " + name.encode()):
        raise LaneError("the lane closed during its hello")
    return lane
