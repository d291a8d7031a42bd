"""A bufferd client written from PROTOCOL.md alone (Python 3.11, standard library only).

Contents:
  packb / unpackb     a small MessagePack encoder/decoder (spec: msgpack/spec.md)
  frame / read_frame  4-byte big-endian length + one MessagePack value (PROTOCOL §2)
  Connection          one socket: requests with ids, responses in order, events queued
  BufferdError        an `error` answer (code, message, details)
  socket_path()       the socket path resolution of PROTOCOL §1
  cookie_path(), read_cookie()   the admin cookie of PROTOCOL §4
"""
from __future__ import annotations

import os
import socket
import struct
import time
from collections import deque
from typing import Any, Callable

# --------------------------------------------------------------------------
# MessagePack
# --------------------------------------------------------------------------


class MsgpackError(ValueError):
    pass


def packb(obj: Any, int64: str = "signed") -> bytes:
    """Encode one value. Integers use the smallest encoding; positive integers
    that need 64 bits use `int 64` (0xd3) when int64="signed" (what PROTOCOL §2
    and the §10 example show), `uint 64` (0xcf) when int64="unsigned".
    Integers >= 2**63 always use uint 64. Floats are float 64."""
    out = bytearray()
    _pack(obj, out, int64, 0)
    return bytes(out)


def _pack(o: Any, out: bytearray, int64: str, depth: int) -> None:
    if depth > 512:
        raise MsgpackError("nesting too deep")
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, int):
        if 0 <= o < 0x80:
            out.append(o)
        elif -32 <= o < 0:
            out.append(o & 0xFF)
        elif 0 <= o <= 0xFF:
            out += b"\xcc" + struct.pack(">B", o)
        elif 0 <= o <= 0xFFFF:
            out += b"\xcd" + struct.pack(">H", o)
        elif 0 <= o <= 0xFFFFFFFF:
            out += b"\xce" + struct.pack(">I", o)
        elif 0 <= o < 2**63 and int64 == "signed":
            out += b"\xd3" + struct.pack(">q", o)
        elif 0 <= o < 2**64:
            out += b"\xcf" + struct.pack(">Q", o)
        elif -0x80 <= o < 0:
            out += b"\xd0" + struct.pack(">b", o)
        elif -0x8000 <= o < 0:
            out += b"\xd1" + struct.pack(">h", o)
        elif -0x80000000 <= o < 0:
            out += b"\xd2" + struct.pack(">i", o)
        elif -(2**63) <= o < 0:
            out += b"\xd3" + struct.pack(">q", o)
        else:
            raise MsgpackError(f"integer out of range: {o}")
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += b"\xd9" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        n = len(b)
        if n <= 0xFF:
            out += b"\xc4" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            out.append(0x90 | n)
        elif n <= 0xFFFF:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for v in o:
            _pack(v, out, int64, depth + 1)
    elif isinstance(o, dict):
        n = len(o)
        if n < 16:
            out.append(0x80 | n)
        elif n <= 0xFFFF:
            out += b"\xde" + struct.pack(">H", n)
        else:
            out += b"\xdf" + struct.pack(">I", n)
        for k, v in o.items():
            _pack(k, out, int64, depth + 1)
            _pack(v, out, int64, depth + 1)
    else:
        raise MsgpackError(f"cannot encode {type(o).__name__}")


# fixed-size headers: byte -> (struct format, size)
_FIXED = {
    0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
    0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
    0xCA: ">f", 0xCB: ">d",
}


def unpackb(data: bytes, max_depth: int = 512) -> Any:
    """Decode exactly one value; trailing bytes, extension types, 0xc1, invalid
    UTF-8 and lengths past the end are errors (MsgpackError)."""
    mv = memoryview(data)
    v, pos = _unpack(mv, 0, 0, max_depth)
    if pos != len(mv):
        raise MsgpackError(f"{len(mv) - pos} trailing bytes at offset {pos}")
    return v


def _take(mv: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(mv):
        raise MsgpackError(f"value cut short at offset {pos}: need {n} bytes, {len(mv) - pos} left")
    return bytes(mv[pos:pos + n]), pos + n


def _unpack(mv: memoryview, pos: int, depth: int, max_depth: int) -> tuple[Any, int]:
    if depth > max_depth:
        raise MsgpackError("nesting too deep")
    if pos >= len(mv):
        raise MsgpackError(f"value cut short at offset {pos}")
    b = mv[pos]
    pos += 1
    if b <= 0x7F:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0x80 <= b <= 0x8F:
        return _map(mv, pos, b & 0x0F, depth, max_depth)
    if 0x90 <= b <= 0x9F:
        return _array(mv, pos, b & 0x0F, depth, max_depth)
    if 0xA0 <= b <= 0xBF:
        return _str(mv, pos, b & 0x1F)
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    if b in _FIXED:
        fmt = _FIXED[b]
        raw, pos = _take(mv, pos, struct.calcsize(fmt))
        return struct.unpack(fmt, raw)[0], pos
    if b in (0xC4, 0xC5, 0xC6):
        fmt = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[b]
        raw, pos = _take(mv, pos, struct.calcsize(fmt))
        n = struct.unpack(fmt, raw)[0]
        return _take(mv, pos, n)
    if b in (0xD9, 0xDA, 0xDB):
        fmt = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[b]
        raw, pos = _take(mv, pos, struct.calcsize(fmt))
        return _str(mv, pos, struct.unpack(fmt, raw)[0])
    if b in (0xDC, 0xDD):
        fmt = ">H" if b == 0xDC else ">I"
        raw, pos = _take(mv, pos, struct.calcsize(fmt))
        return _array(mv, pos, struct.unpack(fmt, raw)[0], depth, max_depth)
    if b in (0xDE, 0xDF):
        fmt = ">H" if b == 0xDE else ">I"
        raw, pos = _take(mv, pos, struct.calcsize(fmt))
        return _map(mv, pos, struct.unpack(fmt, raw)[0], depth, max_depth)
    if b == 0xC1:
        raise MsgpackError(f"reserved byte 0xc1 at offset {pos - 1}")
    raise MsgpackError(f"extension type 0x{b:02x} at offset {pos - 1}")


def _str(mv: memoryview, pos: int, n: int) -> tuple[str, int]:
    raw, pos = _take(mv, pos, n)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as e:
        raise MsgpackError(f"invalid UTF-8 in str at offset {pos - n}") from e


def _array(mv, pos, n, depth, max_depth):
    if n > len(mv) - pos:
        raise MsgpackError(f"array of {n} elements with {len(mv) - pos} bytes left")
    out = []
    for _ in range(n):
        v, pos = _unpack(mv, pos, depth + 1, max_depth)
        out.append(v)
    return out, pos


def _map(mv, pos, n, depth, max_depth):
    if 2 * n > len(mv) - pos:
        raise MsgpackError(f"map of {n} entries with {len(mv) - pos} bytes left")
    out = {}
    for _ in range(n):
        if pos < len(mv) and not (0xA0 <= mv[pos] <= 0xBF or mv[pos] in (0xD9, 0xDA, 0xDB)):
            raise MsgpackError(f"map key is not a str at offset {pos}")
        k, pos = _unpack(mv, pos, depth + 1, max_depth)
        v, pos = _unpack(mv, pos, depth + 1, max_depth)
        out[k] = v
    return out, pos


# --------------------------------------------------------------------------
# Framing (PROTOCOL §2)
# --------------------------------------------------------------------------

MAX_INCOMING = 64 * 1024 * 1024  # "a client should accept frames up to at least 64 MiB"


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def encode_frame(obj: Any, int64: str = "signed") -> bytes:
    return frame(packb(obj, int64))


class ConnectionClosed(EOFError):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionClosed(f"connection closed ({len(buf)} of {n} bytes read)")
        buf += chunk
    return bytes(buf)


def read_frame_body(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n > MAX_INCOMING:
        raise MsgpackError(f"incoming frame of {n} bytes")
    return _recv_exact(sock, n)


# --------------------------------------------------------------------------
# Paths (PROTOCOL §1, §4)
# --------------------------------------------------------------------------


def socket_path(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("BUFFERD_SOCKET"):
        return os.environ["BUFFERD_SOCKET"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "bufferd.sock")
    return f"/tmp/bufferd-{os.getuid()}.sock"


def cookie_path(sock_path: str) -> str:
    d, name = os.path.split(sock_path)
    return os.path.join(d, f".{name}.cookie")


def read_cookie(sock_path: str) -> str:
    """The admin token: the file's 64 hex digits without the newline."""
    with open(cookie_path(sock_path), "r", encoding="ascii") as f:
        return f.read().rstrip("\n")


# --------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------


class BufferdError(Exception):
    def __init__(self, code: str, message: str, details: Any = None, id: Any = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.id = id


class Connection:
    """One connection. `call` returns the whole response map; `request`
    returns `result` or raises BufferdError. Events arriving meanwhile go to
    `self.events` (a deque, oldest first)."""

    def __init__(self, path: str | None = None, timeout: float = 15.0):
        self.path = socket_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.next_id = 1
        self.events: deque[dict] = deque()
        self.pending: deque[dict] = deque()  # responses read ahead (pipelining)
        self.session: dict | None = None

    # -- raw level --
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_obj(self, obj: Any) -> None:
        self.sock.sendall(encode_frame(obj))

    def read_message(self) -> Any:
        return unpackb(read_frame_body(self.sock))

    def read_response(self) -> dict:
        """The next non-event message (events are queued)."""
        if self.pending:
            return self.pending.popleft()
        while True:
            msg = self.read_message()
            if isinstance(msg, dict) and "event" in msg and "id" not in msg:
                self.events.append(msg)
                continue
            return msg

    # -- requests --
    def take_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def submit(self, op: str, fields: dict | None = None, **kw: Any) -> int:
        """Send a request without waiting; returns its id."""
        rid = self.take_id()
        req = {"id": rid, "op": op}
        req.update(fields or {})
        req.update(kw)
        self.send_obj(req)
        return rid

    def call(self, op: str, fields: dict | None = None, **kw: Any) -> dict:
        rid = self.submit(op, fields, **kw)
        while True:
            msg = self.read_response()
            if isinstance(msg, dict) and msg.get("id") == rid:
                return msg
            raise BufferdError("ECLIENT", f"unexpected message while waiting for id {rid}: {msg!r}")

    def request(self, op: str, fields: dict | None = None, **kw: Any) -> Any:
        msg = self.call(op, fields, **kw)
        if "error" in msg:
            e = msg["error"]
            raise BufferdError(e.get("code"), e.get("message"), e.get("details"), msg.get("id"))
        return msg["result"]

    def hello(self, version: int = 1, **kw: Any) -> dict:
        self.session = self.request("hello", version=version, **kw)
        return self.session

    # -- events --
    def wait_event(self, pred: Callable[[dict], bool] | str, timeout: float = 5.0) -> dict:
        """First queued or arriving event matching pred (an event name or a
        predicate); it is removed from the queue."""
        if isinstance(pred, str):
            name = pred
            pred = lambda e: e.get("event") == name  # noqa: E731
        for e in list(self.events):
            if pred(e):
                self.events.remove(e)
                return e
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("event not seen")
                self.sock.settimeout(left)
                try:
                    msg = self.read_message()
                except socket.timeout:
                    raise TimeoutError("event not seen") from None
                if isinstance(msg, dict) and "event" in msg and "id" not in msg:
                    if pred(msg):
                        return msg
                    self.events.append(msg)
                else:
                    self.pending.append(msg)
        finally:
            self.sock.settimeout(old)

    def drain_events(self, quiet: float = 0.2) -> None:
        """Read whatever arrives within `quiet` seconds into the event queue."""
        try:
            self.wait_event(lambda e: False, quiet)
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *a: Any) -> None:
        self.close()


def connect(path: str | None = None, **hello: Any) -> Connection:
    """Connect and say hello (keyword arguments are hello's fields)."""
    c = Connection(path)
    try:
        c.hello(**hello)
    except BaseException:
        c.close()
        raise
    return c
