#!/usr/bin/env python3
"""Conformance suite for bufferd, written from PROTOCOL.md alone.

    python3 test/conformance/cases.py SOCKET_PATH [--allow-shutdown] [CASE-SUBSTRING ...]

Runs against a daemon started without --config (the embedded default
machine). Prints `ok NAME` or `not ok NAME: why` per case, then
`N passed, M failed`; exits 1 on any failure. Section numbers (§) refer to
PROTOCOL.md. With --allow-shutdown the last case sends the daemon SIGTERM.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bufferd_client import (  # noqa: E402
    BufferdError, ConnectionClosed, Connection, MsgpackError, cookie_path, encode_frame, frame,
    packb, read_cookie, read_frame_body, unpackb,
)

# --------------------------------------------------------------------------
# harness
# --------------------------------------------------------------------------

CASES: list[tuple[str, object]] = []
SOCK = ""
PREFIX = f"cf{os.getpid()}"
_seq = [0]
MiB = 1 << 20
HUGE2M = 2 * MiB
HUGE1G = 1 << 30
RIGHTS = ["read", "write", "share"]
VIOLATION_KINDS = [
    "cpu-access-while-device-owned", "device-access-during-cpu-access", "end-without-start",
    "start-while-open", "cpu-write-in-read-bracket", "stale-read", "lost-write", "unsynced-unregister",
    "unregister-not-registered", "sync-out-of-range", "sync-different-direction", "sync-read-only-for-cpu",
    "sync-write-only-to-device", "device-write-to-read-only", "device-read-of-write-only", "overlapping-cacheline",
]


class Fail(AssertionError):
    pass


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


def uname(tag="c"):
    _seq[0] += 1
    return f"{PREFIX}-{tag}{_seq[0]}"


class Ctx:
    def __init__(self):
        self.conns: list[Connection] = []

    def raw(self) -> Connection:
        c = Connection(SOCK)
        self.conns.append(c)
        return c

    def conn(self, named=True, **hello) -> Connection:
        c = self.raw()
        if named and "name" not in hello:
            hello["name"] = uname()
        c.hello(**hello)
        return c

    def admin(self, **hello) -> Connection:
        return self.conn(token=read_cookie(SOCK), **hello)

    def close(self):
        for c in self.conns:
            c.close()


def fail(msg):
    raise Fail(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def eq(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {short(expected)}, got {short(actual)}")


def short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def expect_err(c: Connection, op, code, fields=None, **kw) -> dict:
    """Send a request that must fail with `code`; check the error's framing; return the error map."""
    msg = c.call(op, fields, **kw)
    check("error" in msg, f"{op}: expected {code}, got result {short(msg.get('result'))}")
    e = msg["error"]
    check(isinstance(e, dict), f"{op}: error is not a map: {short(e)}")
    check(e.get("code") == code, f"{op}: expected {code}, got {e.get('code')}: {e.get('message')}")
    check(isinstance(e.get("message"), str) and e["message"], f"{op}: error.message missing")
    check(set(e) <= {"code", "message", "details"}, f"{op}: unexpected error members {sorted(e)}")
    check("result" not in msg, f"{op}: both result and error")
    return e


def details(e, *members) -> dict:
    d = e.get("details")
    check(isinstance(d, dict), f"{e['code']}: details missing ({e['message']})")
    missing = [m for m in members if m not in d]
    check(not missing, f"{e['code']}: details lack {missing}: {short(d)}")
    return d


def ok(c: Connection, op, fields=None, **kw):
    try:
        return c.request(op, fields, **kw)
    except BufferdError as e:
        fail(f"{op} {short(fields or kw, 120)} failed: {e.code}: {e.message}")


# -- type checking against the document's tables --

def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


TYPES = {
    "uint": is_uint,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "nil": lambda v: v is None,
    "map": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "bytes": lambda v: isinstance(v, bytes),
    "any": lambda v: True,
}


def problems(v, spec, path="$") -> list[str]:
    if isinstance(spec, tuple):  # alternatives
        for alt in spec:
            if not problems(v, alt, path):
                return []
        return [f"{path}: {short(v, 80)} is none of {spec}"]
    if isinstance(spec, str):
        return [] if TYPES[spec](v) else [f"{path}: expected {spec}, got {short(v, 80)}"]
    if isinstance(spec, frozenset):  # enum
        return [] if v in spec else [f"{path}: {short(v, 80)} not one of {sorted(spec)}"]
    if isinstance(spec, list):  # list of spec[0]
        if not isinstance(v, list):
            return [f"{path}: expected array, got {short(v, 80)}"]
        out = []
        for i, x in enumerate(v):
            out += problems(x, spec[0], f"{path}[{i}]")
        return out
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            return [f"{path}: expected map, got {short(v, 80)}"]
        out = []
        for k, s in spec.items():
            opt = k.endswith("?")
            k = k.rstrip("?")
            if k not in v:
                if not opt:
                    out.append(f"{path}.{k}: missing")
                continue
            out += problems(v[k], s, f"{path}.{k}")
        return out
    raise TypeError(spec)


def shape(v, spec, what):
    p = problems(v, spec, what)
    check(not p, "; ".join(p[:6]) + (f" (+{len(p) - 6} more)" if len(p) > 6 else ""))


def E(*names):
    return frozenset(names)


UINT_OR_NIL = ("uint", "nil")
SEGMENT = {"addr": "uint", "len": "uint"}
HELLO_RESULT = {
    "clientId": "uint", "name": ("str", "nil"), "protocolVersion": "uint",
    "server": {"name": "str", "version": "str", "pid": "uint"},
    "limits": {k: "uint" for k in ("maxFrameBytes", "maxDataBytes", "maxHandles", "reservedHandles", "maxTokens")},
    "capabilities": ["str"], "principal": "str", "maxBytes": UINT_OR_NIL,
    "accept": (E("any", "none"), ["any"]),
}
HANDLE_DESC = {
    "handle": "uint", "rights": [E(*RIGHTS)],
    "refs": {"handles": "uint", "inflight": "uint", "registrations": "uint", "mappings": "uint"},
    "holders": "uint", "creator": "uint", "placement": ({"for": ["str"], "pool": "str", "reason": "str"}, "nil"),
    "registrations": ["str"], "buffer": "uint", "pool": "str", "cache": E("writeback", "writecombine", "uncached"),
    "region": "str", "pageSize": E(4096, 2097152, 1073741824), "size": "uint", "align": "uint", "usize": "uint",
    "kind": E("small", "large", "direct"), "segments": [SEGMENT], "contiguous": "bool", "populated": "bool",
    "reservedHugepages": "uint", "backedHugepages": "uint", "owner": "uint",
}
REGION = {
    "name": "str", "kind": E("dram", "tcm", "carveout"), "base": "uint", "size": "uint", "free": "uint",
    "largestFree": "uint", "freeByOrder": ["uint"],
    "zones": [{"name": "str", "base": "uint", "size": "uint", "free": "uint", "freeByOrder": ["uint"]}],
}
HUGEPAGES = {k: "uint" for k in ("size", "total", "free", "reserved", "surplus", "nr", "overcommit", "available",
                                 "inUse", "requested", "largestFreeRun")}
HUGEPAGES["region"] = "str"
POOL = {
    "name": "str", "cache": E("writeback", "writecombine", "uncached"), "pageSize": "uint", "region": "str",
    "contiguous": "bool", "maxAddress": "any", "capability": "any", "maxBytes": "any",
    "arena": E("per-client", "shared"), "dirtyDecayMs": "number",
    **{k: "uint" for k in ("pages", "requested", "allocated", "active", "mapped", "resident", "dirty", "retained",
                           "metadata", "buffers", "directBuffers", "purges", "nmalloc", "ndalloc", "conversions")},
    "fragmentation": ("number", "nil"), "arenas": "any", "conversionCostUs": "number",
}
CLIENT = {
    "id": "uint", "name": ("str", "nil"), "handles": "uint", "mappings": "uint", "registrations": "uint",
    "principal": "str", "capabilities": ["str"], "bytes": "uint", "principalBytes": "uint", "maxBytes": UINT_OR_NIL,
    "accept": (E("any", "none"), ["any"]), "eventsDropped": "uint", "connectedMs": "number",
}
DRIVER = {
    "name": "str", "kind": E("builtin", "client"), "owner": "any", "description": "str", "coherent": "bool",
    "iommu": "bool", "registrations": "uint", "bytes": "uint", "iovaUsed": "uint", "iovaTotal": "uint",
    "iommuEntries": "map", "bounceSlots": {"used": "uint", "total": "uint"}, "registered": "uint",
    "refused": "uint", "leaks": "uint",
}
STATUS = {
    "version": "str", "protocolVersion": "uint", "pid": "uint", "uptimeMs": "uint", "socket": "str",
    "dashboard": ("str", "nil"),
    "memory": {"total": "uint", "free": "uint", "regions": [REGION]},
    "hugepages": [HUGEPAGES], "pools": [POOL],
    "conversions": {"total": "uint", "bytes": "uint", "costUs": "number"},
    "clients": [CLIENT],
    "buffers": {k: "uint" for k in ("live", "tokensInFlight", "tokensIssued", "tokensImported", "tokensExpired")},
    "drivers": [DRIVER],
    "coherency": {
        "mode": "str", "prefetch": "str",
        "cache": {k: "uint" for k in ("lineSize", "cachedLines", "dirtyLines", "cleans", "invalidates",
                                      "prefetches", "wcFlushes", "wcPendingLines", "evictions")},
        "violations": {"total": "uint", "byKind": "map"},
    },
    "dma": {"leaks": "uint", "bounce": ({k: "uint" for k in ("base", "size", "slots", "used", "full")}, "nil")},
    "events": {"subscribers": "uint", "published": "uint", "dropped": "uint"},
}
VIOLATION = {
    "seq": "uint", "timeMs": "number", "kind": E(*VIOLATION_KINDS), "client": {"id": "uint", "name": ("str", "nil")},
    "buffer": "uint", "driver": ("str", "nil"), "op": "str", "range": {"offset": "uint", "length": "uint"},
    "mode": E("off", "warn", "strict"), "message": "str",
}
MISMATCH = {"attribute": "str", "required": "any", "actual": "any"}


def alloc(c, pool="default", size=4096, **kw):
    return ok(c, "alloc", pool=pool, size=size, **kw)


def info(c, h):
    return ok(c, "info", handle=h)


def violations_for(c, buffer):
    return ok(c, "violations", buffer=buffer)["violations"]


def kinds_for(c, buffer):
    return [v["kind"] for v in violations_for(c, buffer)]


def left(observer, client_id, timeout=10.0):
    """Wait (by asking, not by a fixed sleep) until status no longer lists client_id."""
    end = time.monotonic() + timeout
    while any(x["id"] == client_id for x in ok(observer, "status")["clients"]):
        if time.monotonic() > end:
            fail(f"client {client_id} still listed {timeout} s after it closed its connection")
        time.sleep(0.02)


def my_client(c, status=None):
    st = status or ok(c, "status")
    me = [x for x in st["clients"] if x["id"] == c.session["clientId"]]
    check(len(me) == 1, "status.clients does not list this connection")
    return me[0]


def activity(c, topic, kind, pred=lambda e: True, timeout=5.0):
    try:
        return c.wait_event(lambda e: e.get("event") == "activity" and e.get("topic") == topic
                            and e.get("kind") == kind and pred(e), timeout)
    except TimeoutError:
        seen = [(e.get("topic"), e.get("kind")) for e in c.events]
        fail(f"no activity {topic}/{kind} within {timeout}s (queued: {short(seen, 200)})")


def event(c, name, pred=lambda e: True, timeout=5.0):
    try:
        return c.wait_event(lambda e: e.get("event") == name and pred(e), timeout)
    except TimeoutError:
        fail(f"no '{name}' event within {timeout}s (queued: {short([e.get('event') for e in c.events], 200)})")


def no_id(e):
    check("id" not in e, f"event carries an id: {short(e)}")


def raw_call(c: Connection, data: bytes) -> dict:
    c.send_raw(data)
    return c.read_response()


def raw_error(c, data, code, id_=None, what="frame"):
    msg = raw_call(c, data)
    check(isinstance(msg, dict) and "error" in msg, f"{what}: expected {code}, got {short(msg)}")
    check("id" in msg, f"{what}: response has no id member")
    eq(msg["id"], id_, f"{what}: response id")
    eq(msg["error"].get("code"), code, f"{what}: error code ({msg['error'].get('message')})")
    return msg["error"]


def still_open(c, what):
    r = c.call("ping")
    check("result" in r, f"connection unusable after {what}: {short(r)}")


def names_offset(message, offset):
    return re.search(rf"\b{offset}\b", message) or f"0x{offset:x}" in message.lower()


# --------------------------------------------------------------------------
# §10 example frames
# --------------------------------------------------------------------------

def doc_examples():
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "..", "PROTOCOL.md"), encoding="utf-8").read()
    sec = text[text.index("## 10. Example frames"):text.index("## 11.")]
    out = []
    for block in re.findall(r"```\n(.*?)```", sec, re.S):
        toks = []
        for line in block.splitlines():
            for t in line.split():
                if re.fullmatch(r"[0-9a-f]{2}", t):
                    toks.append(t)
                else:
                    break
        out.append(bytes.fromhex("".join(toks)))
    return out


def split_frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        out.append(data[:4 + n])
        data = data[4 + n:]
    return out


EX_HELLO = {"id": 1, "op": "hello", "version": 1, "name": "demo"}
EX_HELLO_RESP = {"id": 1, "result": {
    "clientId": 7, "name": "demo", "protocolVersion": 1,
    "server": {"name": "bufferd", "version": "0.1.0", "pid": 4242},
    "limits": {"maxFrameBytes": 4194304, "maxDataBytes": 4193280, "maxHandles": 1024, "reservedHandles": 16,
               "maxTokens": 4096},
    "capabilities": ["alloc:uncached", "alloc:writecombine", "driver"], "principal": "anonymous",
    "maxBytes": None, "accept": "none", "fdSocket": "/run/user/1000/.bufferd.sock.fd",
    "peer": {"pid": 4300, "uid": 1000, "gid": 1000}}}
EX_PING = {"id": 2, "op": "ping"}
EX_ERR = {"id": 2, "error": {"code": "EINVAL", "message": "x"}}
EX_SHUTDOWN = {"event": "shutdown", "reason": "SIGTERM"}
EX_ADDR = {"addr": 10737418240}


def example_case(index, objs):
    def run(ctx):
        blocks = doc_examples()
        check(len(blocks) == 5, f"§10 has {len(blocks)} hex blocks, expected 5")
        frames = split_frames(blocks[index])
        eq(len(frames), len(objs), f"frames in §10 block {index + 1}")
        for f, o in zip(frames, objs):
            mine = encode_frame(o)
            check(mine == f, f"encoding {short(o, 80)}:\n  doc  {f.hex(' ')}\n  mine {mine.hex(' ')}")
            eq(unpackb(f[4:]), o, "decoding the document's bytes")
            (n,) = struct.unpack(">I", f[:4])
            eq(n, len(f) - 4, "length prefix")
    return run


case("example.hello-request-bytes")(example_case(0, [EX_HELLO]))
case("example.hello-response-bytes")(example_case(1, [EX_HELLO_RESP]))
case("example.ping-and-error-bytes")(example_case(2, [EX_PING, EX_ERR]))
case("example.shutdown-event-bytes")(example_case(3, [EX_SHUTDOWN]))
case("example.int64-address-bytes")(example_case(4, [EX_ADDR]))


@case("example.hello-request-live")
def _(ctx):
    """The §10 hello bytes, sent as they are, get a response shaped like the §10 response."""
    c = ctx.raw()
    c.send_raw(doc_examples()[0])
    r = c.read_response()
    eq(r.get("id"), 1, "id")
    check("result" in r, f"hello failed: {short(r)}")
    res = r["result"]
    eq(sorted(res), sorted(EX_HELLO_RESP["result"]), "result members")
    eq(res["name"], "demo", "name")
    eq(res["limits"], EX_HELLO_RESP["result"]["limits"], "default limits")
    eq(res["server"]["name"], "bufferd", "server.name")
    c.send_raw(doc_examples()[2][:17])  # the ping frame
    r = c.read_response()
    eq(r.get("id"), 2, "ping id")
    check("result" in r, f"ping failed: {short(r)}")


# --------------------------------------------------------------------------
# MessagePack codec self-checks (spec conformance of our own encoder/decoder)
# --------------------------------------------------------------------------

@case("codec.roundtrip-and-spec-bytes")
def _(ctx):
    cases = [
        (None, "c0"), (True, "c3"), (False, "c2"), (0, "00"), (127, "7f"), (128, "cc80"), (255, "ccff"),
        (256, "cd0100"), (65536, "ce00010000"), (-1, "ff"), (-32, "e0"), (-33, "d0df"), (-129, "d1ff7f"),
        (-32769, "d2ffff7fff"), (2**32, "d30000000100000000"), (2**64 - 1, "cfffffffffffffffff"),
        (-(2**63), "d38000000000000000"), (1.5, "cb3ff8000000000000"), ("", "a0"), ("a" * 32, "d920" + "61" * 32),
        (b"\x01", "c40101"), ([], "90"), ({}, "80"), ([1, [2]], "920191" + "02"),
    ]
    for v, hx in cases:
        eq(packb(v).hex(), hx, f"packb({short(v, 40)})")
        eq(unpackb(bytes.fromhex(hx)), v, f"unpackb({hx[:20]})")
    eq(packb(2**32, int64="unsigned").hex(), "cf0000000100000000", "uint 64 option")
    big = {"s": "é" * 300, "b": bytes(70000), "a": list(range(20)), "m": {str(i): i for i in range(20)}}
    eq(unpackb(packb(big)), big, "str16/bin32/array16/map16 round trip")
    eq(unpackb(bytes.fromhex("ca3fc00000")), 1.5, "float 32")
    for bad in ("c1", "d401", "c70100", "81" + "01" + "01", "a2" + "61", "9101" + "01", "a1ff"):
        try:
            unpackb(bytes.fromhex(bad))
        except MsgpackError:
            continue
        fail(f"decoder accepted invalid {bad}")


# --------------------------------------------------------------------------
# hello, ping (§4, §5)
# --------------------------------------------------------------------------

@case("hello.result-shape")
def _(ctx):
    name = uname("hello")
    c = ctx.raw()
    r = c.hello(name=name)
    shape(r, HELLO_RESULT, "hello")
    eq(r["protocolVersion"], 1, "protocolVersion")
    eq(r["name"], name, "name")
    eq(r["server"]["name"], "bufferd", "server.name")
    eq(r["principal"], "anonymous", "principal without a token")
    eq(r["accept"], "none", "default accept")
    check("admin" not in r["capabilities"], "anonymous has admin")
    lim = r["limits"]
    eq(lim["maxFrameBytes"], 4194304, "default maxFrameBytes")
    eq(lim["maxHandles"], 1024, "default maxHandles")
    eq(lim["reservedHandles"], 16, "default reservedHandles")
    eq(lim["maxTokens"], 4096, "default maxTokens")
    check(0 < lim["maxDataBytes"] < lim["maxFrameBytes"], f"maxDataBytes {lim['maxDataBytes']} must fit in a frame")
    st = ok(c, "status")
    eq(r["server"]["pid"], st["pid"], "server.pid vs status.pid")
    eq(r["server"]["version"], st["version"], "server.version vs status.version")
    me = my_client(c, st)
    eq(me["name"], name, "status.clients[].name")
    eq(me["principal"], "anonymous", "status.clients[].principal")
    eq(sorted(me["capabilities"]), sorted(r["capabilities"]), "status.clients[].capabilities")


@case("hello.client-ids-unique-name-nil")
def _(ctx):
    a = ctx.raw().hello()
    b = ctx.raw().hello()
    eq(a["name"], None, "name without a name")
    check(b["clientId"] > a["clientId"], f"client ids {a['clientId']}, {b['clientId']}: never reused, so increasing")


@case("hello.unsupported-version")
def _(ctx):
    c = ctx.raw()
    e = expect_err(c, "hello", "EPROTO", version=2)
    d = details(e, "supported", "requested")
    eq(d["requested"], 2, "details.requested")
    check(d["supported"] == 1 or (isinstance(d["supported"], list) and 1 in d["supported"]),
          f"details.supported {short(d['supported'])} should name version 1")
    check("1" in e["message"] and "2" in e["message"], f"message should name both versions: {e['message']}")
    eq(c.hello()["protocolVersion"], 1, "hello after the refusal")


@case("hello.op-before-hello-then-hello")
def _(ctx):
    c = ctx.raw()
    rid = c.take_id()
    c.send_obj({"id": rid, "op": "ping"})
    r = c.read_response()
    eq(r.get("id"), rid, "the EPROTO answer keeps the request's id")
    eq(r.get("error", {}).get("code"), "EPROTO", "ping before hello")
    expect_err(c, "status", "EPROTO")
    c.hello()
    still_open(c, "EPROTO before hello")


@case("hello.repeated")
def _(ctx):
    c = ctx.conn()
    expect_err(c, "hello", "EPROTO", version=1)
    still_open(c, "a second hello")


@case("hello.unknown-token")
def _(ctx):
    c = ctx.raw()
    expect_err(c, "hello", "EPERM", version=1, token="not-a-token")
    expect_err(c, "hello", "EPERM", version=1, token="0" * 64)
    eq(c.hello()["principal"], "anonymous", "hello without token after the refusals")


@case("transport.socket-mode")
def _(ctx):
    st = os.stat(SOCK)
    check(stat.S_ISSOCK(st.st_mode), "the socket path is a socket")
    eq(oct(stat.S_IMODE(st.st_mode)), oct(0o660), "socket file mode (default server.socketMode)")


@case("hello.cookie-file-and-token")
def _(ctx):
    p = cookie_path(SOCK)
    st = os.stat(p)
    eq(stat.S_IMODE(st.st_mode), 0o600, "cookie file mode")
    raw = open(p, "rb").read()
    check(re.fullmatch(rb"[0-9a-f]{64}\n", raw) is not None, f"cookie must be 64 lowercase hex digits and a newline: {raw!r}")
    c = ctx.raw()
    r = c.hello(token=read_cookie(SOCK))
    eq(r["principal"], "cookie", "principal")
    check("admin" in r["capabilities"], f"cookie capabilities {r['capabilities']} lack admin")
    eq(r["maxBytes"], None, "the cookie principal has no byte quota")
    c2 = ctx.raw()
    expect_err(c2, "hello", "EPERM", version=1, token=raw.decode())  # with the newline: not the token


@case("hello.name-in-use-and-invalid")
def _(ctx):
    a = ctx.conn()
    b = ctx.raw()
    e = expect_err(b, "hello", "EEXIST", version=1, name=a.session["name"])
    d = details(e, "holder")
    check(d["holder"] in (a.session["clientId"], a.session["name"]), f"details.holder {d['holder']!r} is not the holder")
    for bad in ("-x", "", "a" * 65, "a b", "a/b"):
        expect_err(b, "hello", "EINVAL", version=1, name=bad)
    b.hello(name="A0._:@-" + uname("ok"))
    a.close()
    left(b, a.session["clientId"])
    c = ctx.raw()
    eq(c.hello(name=a.session["name"])["name"], a.session["name"], "a name is free again after its holder left")


@case("hello.accept-field")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn(accept="any")
    eq(b.session["accept"], "any", "accept any echoed")
    c = ctx.conn(accept=["someone", a.session["clientId"]])
    eq(c.session["accept"], [a.session["clientId"], "someone"], "accept list as stored: ids first, then names")
    eq(my_client(c)["accept"], [a.session["clientId"], "someone"], "status.clients[].accept")
    d = ctx.raw()
    expect_err(d, "hello", "EINVAL", version=1, accept="some")
    expect_err(d, "hello", "EINVAL", version=1, accept=[])


@case("hello.bad-fields")
def _(ctx):
    c = ctx.raw()
    expect_err(c, "hello", "EINVAL", version=1, colour="red")
    expect_err(c, "hello", "EINVAL", version="1")
    expect_err(c, "hello", "EINVAL", {})
    expect_err(c, "hello", "EINVAL", version=1, token="")
    expect_err(c, "hello", "EINVAL", version=1, token="t" * 257)
    c.hello()


@case("ping")
def _(ctx):
    c = ctx.conn()
    a = ok(c, "ping")
    eq(sorted(a), ["uptimeMs"], "ping result members")
    check(TYPES["number"](a["uptimeMs"]) and a["uptimeMs"] >= 0, f"uptimeMs {a['uptimeMs']!r}")
    time.sleep(0.02)
    b = ok(c, "ping")
    check(b["uptimeMs"] >= a["uptimeMs"] + 15, f"uptimeMs did not advance: {a['uptimeMs']} -> {b['uptimeMs']}")
    e = expect_err(c, "ping", "EINVAL", extra=1)
    check("extra" in e["message"], f"message should name the field: {e['message']}")


# --------------------------------------------------------------------------
# status, pools (§6)
# --------------------------------------------------------------------------

@case("status.shape")
def _(ctx):
    c = ctx.conn()
    alloc(c, "default", 100)
    alloc(c, "default", 3 * MiB)
    alloc(c, "huge", 4096)
    st = ok(c, "status")
    shape(st, STATUS, "status")
    eq(st["protocolVersion"], 1, "status.protocolVersion")
    eq(st["socket"], SOCK, "status.socket")
    eq(st["dashboard"], None, "status.dashboard without --http")
    for r in st["memory"]["regions"]:
        by_order = sum(n * (4096 << i) for i, n in enumerate(r["freeByOrder"]))
        eq(by_order, r["free"], f"region {r['name']}: freeByOrder blocks vs free")
        eq(sum(z["size"] for z in r["zones"]), r["size"], f"region {r['name']}: zone sizes")
        eq(sum(z["free"] for z in r["zones"]), r["free"], f"region {r['name']}: zone free")
        for z in r["zones"]:
            eq(sum(n * (4096 << i) for i, n in enumerate(z["freeByOrder"])), z["free"], f"zone {z['name']}: freeByOrder blocks vs free")
        summed = [sum(z["freeByOrder"][i] if i < len(z["freeByOrder"]) else 0 for z in r["zones"]) for i in range(len(r["freeByOrder"]))]
        eq(summed, r["freeByOrder"], f"region {r['name']}: freeByOrder is its zones' added up")
        check(r["largestFree"] <= r["free"], f"region {r['name']}: largestFree > free")
    for h in st["hugepages"]:
        eq(h["available"], h["free"] - h["reserved"], f"hugepages {h['size']}: available = free - reserved")
    check({h["size"] for h in st["hugepages"]} == {HUGE2M, HUGE1G}, "hugepages sizes 2 MiB and 1 GiB")
    for p in st["pools"]:
        n = p["name"]
        check(p["requested"] <= p["allocated"] <= p["active"] <= p["mapped"],
              f"pool {n}: requested {p['requested']} <= allocated {p['allocated']} <= active {p['active']} <= mapped {p['mapped']}")
        eq(p["active"] + p["dirty"] + p["retained"], p["mapped"], f"pool {n}: active + dirty + retained = mapped")
        eq(p["resident"], p["pages"] * p["pageSize"], f"pool {n}: resident = pages of pageSize")
    shape(st["coherency"]["violations"]["byKind"], {k: "uint" for k in VIOLATION_KINDS}, "coherency.violations.byKind")
    eq(st["coherency"]["cache"]["lineSize"], 64, "cache line size")
    for d in st["drivers"]:
        for k, v in d["iommuEntries"].items():
            check(k.isdigit() and is_uint(v), f"driver {d['name']}: iommuEntries {k!r}: {v!r}")
    check(st["buffers"]["live"] >= 3, "buffers.live counts this connection's buffers")
    me = my_client(c, st)
    eq(me["handles"], 3, "clients[].handles")
    check(me["bytes"] >= 100 + 3 * MiB + 4096, f"clients[].bytes {me['bytes']}")


@case("status.pool-detail")
def _(ctx):
    c = ctx.conn()
    alloc(c, "default", 100)
    r = ok(c, "status", pool="default")
    arena = {k: "uint" for k in ("id", "owner", "live", "allocated", "active", "mapped", "resident", "dirty",
                                 "retained", "metadata", "chunks", "purges", "purged", "nmalloc", "ndalloc")}
    binspec = {k: "uint" for k in ("ind", "size", "nregs", "slabSize", "curregs", "curslabs", "nonfull",
                                   "nmalloc", "ndalloc")}
    shape(r.get("pool"), {"name": "str", "directThreshold": "uint", "arenas": [arena], "bins": [binspec]}, "status.pool")
    eq(r["pool"]["name"], "default", "pool.name")
    shape(r, STATUS, "status")
    e = expect_err(c, "status", "ENOENT", pool="nosuchpool")
    check("nosuchpool" in e["message"], f"message should name the pool: {e['message']}")


@case("status.large-integers-are-int64")
def _(ctx):
    """§2: integers outside 32 bits are sent as int 64 (0xd3) or uint 64 (0xcf), never as floats."""
    c = ctx.conn()
    alloc(c, "default", 4096)
    rid = c.take_id()
    c.send_obj({"id": rid, "op": "status"})
    while True:
        body = read_frame_body(c.sock)
        if unpackb(body).get("id") == rid:
            break
    seen = {"d3": 0, "cf": 0}
    floats = []

    def walk(mv, pos, depth=0):  # minimal re-walk recording numeric encodings
        b = mv[pos]
        if b in (0xD3, 0xCF):
            v = struct.unpack(">q" if b == 0xD3 else ">Q", mv[pos + 1:pos + 9])[0]
            if v >= 2**32:
                seen["d3" if b == 0xD3 else "cf"] += 1
            return pos + 9
        if b == 0xCB:
            v = struct.unpack(">d", mv[pos + 1:pos + 9])[0]
            if v == int(v) and abs(v) >= 2**32:
                floats.append(v)
            return pos + 9
        if b == 0xCA:
            return pos + 5
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            return pos + 1
        if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
            n, pos = (b & 0xF, pos + 1) if b <= 0x8F else (
                struct.unpack(">H", mv[pos + 1:pos + 3])[0], pos + 3) if b == 0xDE else (
                struct.unpack(">I", mv[pos + 1:pos + 5])[0], pos + 5)
            for _ in range(2 * n):
                pos = walk(mv, pos, depth + 1)
            return pos
        if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
            n, pos = (b & 0xF, pos + 1) if b <= 0x9F else (
                struct.unpack(">H", mv[pos + 1:pos + 3])[0], pos + 3) if b == 0xDC else (
                struct.unpack(">I", mv[pos + 1:pos + 5])[0], pos + 5)
            for _ in range(n):
                pos = walk(mv, pos, depth + 1)
            return pos
        if 0xA0 <= b <= 0xBF:
            return pos + 1 + (b & 0x1F)
        sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xD0: 1, 0xD1: 2, 0xD2: 4}
        if b in sizes:
            return pos + 1 + sizes[b]
        lens = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
        if b in lens:
            w = struct.calcsize(lens[b])
            return pos + 1 + w + struct.unpack(lens[b], mv[pos + 1:pos + 1 + w])[0]
        raise MsgpackError(f"unexpected byte 0x{b:02x}")

    walk(memoryview(body), 0)
    check(not floats, f"integers above 32 bits sent as float 64: {floats[:5]}")
    check(seen["d3"] + seen["cf"] > 0, "status (memory.total > 4 GiB) carried no 64-bit integer")


@case("pools")
def _(ctx):
    c = ctx.conn()
    r = ok(c, "pools")
    eq(sorted(r), ["pools"], "pools result members")
    shape(r["pools"], [POOL], "pools")
    st = ok(c, "status")
    eq([p["name"] for p in r["pools"]], [p["name"] for p in st["pools"]], "same pools as status.pools")
    names = {p["name"] for p in r["pools"]}
    for n in ("default", "huge", "wc", "uncached", "contig", "dma32", "tcm", "giant"):
        check(n in names, f"pool {n} of the default machine missing")
    caps = {p["name"]: p["capability"] for p in r["pools"]}
    eq(caps["wc"], "alloc:writecombine", "wc capability (§4: alloc:writecombine in the default machine)")
    eq(caps["uncached"], "alloc:uncached", "uncached capability")


# --------------------------------------------------------------------------
# alloc, info, read, write, close, dup (§4 Handles, §5)
# --------------------------------------------------------------------------

@case("alloc.description")
def _(ctx):
    c = ctx.conn()
    r = alloc(c, "default", 100)
    shape(r, HANDLE_DESC, "alloc")
    eq(r["handle"], 0, "first handle")
    eq(sorted(r["rights"]), sorted(RIGHTS), "rights")
    eq(r["refs"], {"handles": 1, "inflight": 0, "registrations": 0, "mappings": 0}, "refs")
    eq(r["holders"], 1, "holders")
    eq(r["creator"], c.session["clientId"], "creator")
    eq(r["owner"], c.session["clientId"], "owner")
    eq(r["placement"], None, "placement without for")
    eq(r["registrations"], [], "registrations")
    eq((r["pool"], r["cache"], r["pageSize"], r["size"], r["align"]), ("default", "writeback", 4096, 100, 1),
       "pool, cache, pageSize, size, align")
    eq(r["kind"], "small", "kind of 100 bytes")
    check(r["usize"] >= 100, "usize >= size")
    eq(sum(s["len"] for s in r["segments"]), 100, "segments cover size")
    eq(r["contiguous"], len(r["segments"]) == 1, "contiguous = one segment")
    eq((r["populated"], r["reservedHugepages"]), (True, 0), "populated, reservedHugepages")
    i = info(c, 0)
    eq({k: v for k, v in i.items()}, r, "info = the alloc description")
    eq(ok(c, "read", handle=0, offset=0, length=100)["data"], bytes(100), "a new buffer is zeroed")


@case("alloc.kinds")
def _(ctx):
    c = ctx.conn()
    eq(alloc(c, "default", 14336)["kind"], "small", "14336 B")
    r = alloc(c, "default", 14337)
    eq(r["kind"], "large", "14337 B")
    eq(r["usize"] % 4096, 0, "large usize is a page multiple")
    r = alloc(c, "default", 2 * MiB)
    eq(r["kind"], "direct", "2 MiB in a 4 KiB pool")
    eq(r["usize"], 2 * MiB, "direct usize = whole pages")
    r = alloc(c, "huge", 5 * MiB)
    eq(r["kind"], "direct", "5 MiB in a 2 MiB pool")
    eq(r["usize"], 6 * MiB, "direct usize in whole hugepages")
    eq(r["pageSize"], HUGE2M, "huge pageSize")
    r = alloc(c, "default", 8192, align=8192)
    eq(r["segments"][0]["addr"] % 8192, 0, "align honoured")


@case("alloc.errors")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "alloc", "ENOENT", pool="nosuchpool", size=10)
    check("default" in e["message"], f"ENOENT should list the pools: {e['message']}")
    for f in ({"pool": "default", "size": 0}, {"pool": "default", "size": 68719476737},
              {"pool": "default", "size": 10, "align": 3}, {"pool": "default"},
              {"size": 10}, {"pool": "default", "size": 10, "for": ["gpu"]},
              {"pool": "huge", "size": 10, "align": 4 * MiB}, {"pool": "default", "size": -1}):
        e = expect_err(c, "alloc", "EINVAL", f)
    e = expect_err(c, "alloc", "EINVAL", pool="default", size=68719476737)
    check("size" in e["message"], f"message should name size: {e['message']}")
    eq(my_client(c)["handles"], 0, "failed allocs change nothing")


@case("alloc.enomem-details")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "alloc", "ENOMEM", pool="default", size=68719476736)
    d = details(e, "pool", "requested", "free", "largestFree", "requestedPages")
    eq(d["pool"], "default", "details.pool")
    check(all(is_uint(d[k]) for k in ("requested", "free", "largestFree", "requestedPages")), f"uints: {short(d)}")
    e = expect_err(c, "alloc", "ENOMEM", pool="huge", size=68719476736)
    details(e, "pool", "requested", "hugepagesFree", "hugepagesReserved", "hugepagesAvailable", "hugepagesTotal",
            "largestFreeRun", "hugepagesSurplus", "hugepagesOvercommit", "requestedHugepages")
    eq(my_client(c)["handles"], 0, "failed allocs change nothing")


@case("alloc.populate-false")
def _(ctx):
    c = ctx.conn()
    before = {h["size"]: h for h in ok(c, "status")["hugepages"]}[HUGE2M]
    r = alloc(c, "huge", 4 * MiB, populate=False)
    eq(r["kind"], "direct", "kind")
    eq(r["populated"], False, "populated")
    eq(r["reservedHugepages"], 2, "reservedHugepages")
    eq(r["segments"], [], "segments while only reserved")
    mid = {h["size"]: h for h in ok(c, "status")["hugepages"]}[HUGE2M]
    eq(mid["reserved"], before["reserved"] + 2, "hugepages.reserved")
    eq(r["backedHugepages"], 0, "backedHugepages while only reserved")
    ok(c, "write", handle=r["handle"], offset=0, data=b"x")
    i = info(c, r["handle"])
    check(i["segments"], "segments after first use")
    eq((i["reservedHugepages"], i["backedHugepages"]), (1, 1), "a 1-byte write faults in one hugepage of two")
    eq([s.get("offset") for s in i["segments"]], [0], "a partly backed buffer's segments carry their offsets")
    after = {h["size"]: h for h in ok(c, "status")["hugepages"]}[HUGE2M]
    eq((after["free"], after["reserved"]), (mid["free"] - 1, mid["reserved"] - 1), "the fault took one reserved page: free-1, reserved-1")


@case("alloc.for-placement")
def _(ctx):
    c = ctx.conn()
    r = ok(c, "alloc", {"for": ["display"], "size": 65536})
    shape(r["placement"], {"for": ["str"], "pool": "str", "reason": "str"}, "placement")
    eq(r["placement"]["for"], ["display"], "placement.for")
    eq(r["placement"]["pool"], r["pool"], "placement.pool")
    eq(r["cache"], "writecombine", "display wants writecombine")
    eq(r["contiguous"], True, "display wants contiguous")
    check(r["align"] >= 4096 and r["segments"][0]["addr"] % 4096 == 0, "align at least the merged alignment")
    reg = ok(c, "register", handle=r["handle"], driver="display")
    eq(reg["driver"], "display", "the placed buffer registers")
    fits = [p["name"] for p in ok(c, "merge", drivers=["display"])["pools"] if p["fits"] and p["allowed"]]
    order = [p["name"] for p in ok(c, "pools")["pools"]]
    first = [n for n in order if n in fits][0]
    eq(r["pool"], first, "the first pool in config order that fits and is allowed")


@case("alloc.for-errors")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "alloc", "ENOENT", {"for": ["dsp", "display"], "size": 4096})
    d = details(e, "merged", "pools")
    check(isinstance(d["pools"], list) and d["pools"], "details.pools lists every pool")
    shape(d["pools"], [{"name": "str", "misfits": [MISMATCH]}], "details.pools")
    e = expect_err(c, "alloc", "EINVAL", {"for": ["display", "nic"], "size": 4096})
    d = details(e, "conflicts")
    check(any(x.get("attribute") == "cache" for x in d["conflicts"]), f"cache conflict: {short(d)}")
    e = expect_err(c, "alloc", "ENOENT", {"for": ["nosuchdriver"], "size": 4096})


@case("handles.lowest-free")
def _(ctx):
    c = ctx.conn()
    eq([alloc(c, size=10)["handle"] for _ in range(3)], [0, 1, 2], "first handles")
    eq(ok(c, "close", handle=1), {"handle": 1, "closed": True}, "close result")
    d = ok(c, "dup", handle=0)
    eq(d["handle"], 1, "dup takes the lowest free number")
    eq(sorted(d["rights"]), sorted(RIGHTS), "dup keeps rights")
    eq(alloc(c, size=10)["handle"], 3, "next alloc")
    ok(c, "close", handle=0)
    t = ok(c, "export", handle=2)["token"]
    eq(ok(c, "import", token=t)["handle"], 0, "import takes the lowest free number")


@case("handles.ebadf")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn()
    alloc(a, size=10)
    for op, f in (("info", {"handle": 0}), ("close", {"handle": 0}), ("dup", {"handle": 0}),
                  ("read", {"handle": 0, "offset": 0, "length": 1}),
                  ("write", {"handle": 0, "offset": 0, "data": b"x"}), ("export", {"handle": 0}),
                  ("send", {"handle": 0, "to": a.session["clientId"]}), ("map", {"handle": 0}),
                  ("register", {"handle": 0, "driver": "nic"}), ("fence", {"handle": 0}),
                  ("sync", {"handle": 0, "phase": "start", "access": "read"})):
        e = expect_err(b, op, "EBADF", f)
        eq(details(e, "handle")["handle"], 0, f"{op}: details.handle")
    ok(a, "close", handle=0)
    e = expect_err(a, "close", "EBADF", handle=0)
    expect_err(a, "info", "EBADF", handle=0)


@case("handles.dup-refs-holders")
def _(ctx):
    a = ctx.conn()
    h = alloc(a, size=10)
    d = ok(a, "dup", handle=h["handle"])
    eq(sorted(d), ["handle", "rights"], "dup result members")
    eq(info(a, 0)["refs"]["handles"], 2, "refs.handles after dup")
    eq(info(a, 0)["holders"], 1, "holders: one connection")
    ok(a, "close", handle=0)
    ok(a, "write", handle=1, offset=0, data=b"still")
    eq(info(a, 1)["refs"]["handles"], 1, "refs.handles after close")


@case("handles.read-write")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, size=1000)["handle"]
    eq(ok(c, "write", handle=h, offset=10, data=b"hello"), {"written": 5}, "write result")
    eq(ok(c, "read", handle=h, offset=8, length=9)["data"], b"\0\0hello\0\0", "read back")
    ok(c, "write", handle=h, offset=995, data=b"12345")
    e = expect_err(c, "write", "EINVAL", handle=h, offset=996, data=b"12345")
    d = details(e, "offset", "length", "size")
    eq((d["offset"], d["length"], d["size"]), (996, 5, 1000), "details {offset, length, size}")
    e = expect_err(c, "read", "EINVAL", handle=h, offset=1000, length=1)
    eq(details(e, "offset", "length", "size")["size"], 1000, "read range details.size")
    expect_err(c, "write", "EINVAL", handle=h, offset=0, data="text")  # data must be bin
    expect_err(c, "write", "EINVAL", handle=h, data=b"x")  # offset required
    expect_err(c, "write", "EINVAL", offset=0, data=b"x")  # handle or mapping required


@case("handles.max-data-bytes")
def _(ctx):
    c = ctx.conn()
    m = c.session["limits"]["maxDataBytes"]
    h = alloc(c, size=m + 4096)["handle"]
    eq(ok(c, "write", handle=h, offset=0, data=b"\x01" * m)["written"], m, "a write of maxDataBytes")
    e = expect_err(c, "write", "EINVAL", handle=h, offset=0, data=b"\x01" * (m + 1))
    d = details(e, "length", "maxDataBytes")
    eq((d["length"], d["maxDataBytes"]), (m + 1, m), "details {length, maxDataBytes}")
    e = expect_err(c, "read", "EINVAL", handle=h, offset=0, length=m + 1)
    eq(details(e, "length", "maxDataBytes")["maxDataBytes"], m, "read over maxDataBytes")
    eq(len(ok(c, "read", handle=h, offset=0, length=m)["data"]), m, "a read of maxDataBytes")


@case("handles.rights")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, size=10)["handle"]
    t = ok(c, "export", handle=h, rights=["read"])
    eq(t["rights"], ["read"], "export narrowed rights")
    r = ok(c, "import", token=t["token"])
    eq(r["rights"], ["read"], "imported rights")
    e = expect_err(c, "write", "EPERM", handle=r["handle"], offset=0, data=b"x")
    d = details(e, "handle", "missing")
    eq(d["handle"], r["handle"], "details.handle")
    check(d["missing"] in ("write", ["write"]), f"details.missing {d['missing']!r} should name write")
    check("write" in e["message"], f"message names the right: {e['message']}")
    e = expect_err(c, "export", "EPERM", handle=r["handle"])
    check("share" in e["message"], f"export without share: {e['message']}")
    eq(ok(c, "dup", handle=r["handle"])["rights"], ["read"], "dup keeps narrowed rights")
    t = ok(c, "export", handle=h, rights=["read", "share"])
    r2 = ok(c, "import", token=t["token"])
    e = expect_err(c, "export", "EPERM", handle=r2["handle"], rights=["read", "write"])
    check("write" in e["message"], f"widening names write: {e['message']}")
    expect_err(c, "export", "EINVAL", handle=h, rights=["execute"])
    t = ok(c, "export", handle=h, rights=["write", "share"])
    r3 = ok(c, "import", token=t["token"])
    e = expect_err(c, "read", "EPERM", handle=r3["handle"], offset=0, length=1)
    check(details(e, "handle", "missing")["missing"] in ("read", ["read"]), "details.missing read")


@case("handles.emfile")
def _(ctx):
    c = ctx.conn()
    mx = c.session["limits"]["maxHandles"]
    alloc(c, size=10)
    ids = [c.submit("dup", handle=0) for _ in range(mx - 1)]
    for rid in ids:
        r = c.read_response()
        eq(r.get("id"), rid, "pipelined dup answered in order")
        check("result" in r, f"dup {rid} failed: {short(r)}")
    e = expect_err(c, "dup", "EMFILE", handle=0)
    d = details(e, "handles", "mappings", "registrations", "maxHandles")
    eq((d["handles"], d["mappings"], d["registrations"], d["maxHandles"]), (mx, 0, 0, mx), "EMFILE details")
    expect_err(c, "alloc", "EMFILE", pool="default", size=10)
    expect_err(c, "map", "EMFILE", handle=0)
    expect_err(c, "register", "EMFILE", handle=0, driver="nic")
    ok(c, "close", handle=5)
    eq(ok(c, "dup", handle=0)["handle"], 5, "a freed slot is usable again")


# --------------------------------------------------------------------------
# accept, send (§4, §5, §8 handle event)
# --------------------------------------------------------------------------

@case("send.refused-by-default")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn()
    h = alloc(a, size=10)["handle"]
    e = expect_err(a, "send", "EPERM", handle=h, to=b.session["name"])
    d = details(e, "to", "accept")
    eq(d["to"], b.session["clientId"], "details.to")
    eq(d["accept"], "none", "details.accept")
    e = expect_err(a, "send", "EPERM", handle=h, to=b.session["clientId"])
    eq(my_client(b)["handles"], 0, "nothing arrived")
    b.drain_events(0.1)
    check(not [x for x in b.events if x.get("event") == "handle"], "a handle event arrived for a refused send")


@case("send.accepted-handle-event")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn(accept="any")
    alloc(b, size=1)  # the receiver's 0 is taken: the new number is 1
    h = alloc(a, "default", 5000)
    r = ok(a, "send", handle=h["handle"], to=b.session["name"], rights=["read", "share"])
    eq(sorted(r), ["rights", "to", "toName"], "send result members")
    eq((r["to"], r["toName"]), (b.session["clientId"], b.session["name"]), "send result to, toName")
    eq(r["rights"], ["read", "share"], "send result rights")
    ev = event(b, "handle")
    no_id(ev)
    shape(ev, {"event": "str", "handle": "uint", "rights": ["str"], "from": {"id": "uint", "name": ("str", "nil")},
               "buffer": "uint", "size": "uint", "pool": "str", "cache": "str"}, "handle event")
    eq(ev["handle"], 1, "handle event: the new (lowest free) number")
    eq(ev["rights"], ["read", "share"], "handle event rights")
    eq(ev["from"], {"id": a.session["clientId"], "name": a.session["name"]}, "handle event from")
    eq((ev["buffer"], ev["size"], ev["pool"], ev["cache"]), (h["buffer"], 5000, "default", "writeback"),
       "handle event buffer, size, pool, cache")
    i = info(b, 1)
    eq(i["buffer"], h["buffer"], "the received handle names the buffer")
    eq(i["rights"], ["read", "share"], "received rights")
    eq(info(a, h["handle"])["holders"], 2, "holders after send")
    ok(a, "write", handle=h["handle"], offset=0, data=b"shared")
    eq(ok(b, "read", handle=1, offset=0, length=6)["data"], b"shared", "same bytes")
    expect_err(b, "write", "EPERM", handle=1, offset=0, data=b"x")
    e = expect_err(b, "send", "EPERM", handle=1, to=a.session["clientId"], rights=["write"])  # widening
    ok(a, "write", handle=h["handle"], offset=0, data=b"x")  # the sender keeps its handle


@case("send.accept-list-and-op")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn()
    other = ctx.conn()
    r = ok(b, "accept", {"from": [a.session["name"], other.session["clientId"]]})
    eq(r, {"accept": [other.session["clientId"], a.session["name"]]}, "accept: ids first, then names")
    h = alloc(a, size=10)["handle"]
    ok(a, "send", handle=h, to=b.session["clientId"])
    event(b, "handle")
    third = ctx.conn()
    h3 = alloc(third, size=10)["handle"]
    e = expect_err(third, "send", "EPERM", handle=h3, to=b.session["name"])
    eq(details(e, "to", "accept")["accept"], [other.session["clientId"], a.session["name"]], "details.accept")
    eq(ok(b, "accept", {"from": "none"}), {"accept": "none"}, "accept none")
    expect_err(a, "send", "EPERM", handle=h, to=b.session["clientId"])
    eq(ok(b, "accept", {"from": "any"}), {"accept": "any"}, "accept any")
    ok(third, "send", handle=h3, to=b.session["clientId"])
    expect_err(b, "accept", "EINVAL", {"from": "everyone"})


@case("send.errors")
def _(ctx):
    a = ctx.conn()
    h = alloc(a, size=10)["handle"]
    e = expect_err(a, "send", "ENOENT", handle=h, to=uname("nobody"))
    check("to" in details(e, "to"), "details.to")
    e = expect_err(a, "send", "ENOENT", handle=h, to=10**9)
    eq(details(e, "to")["to"], 10**9, "details.to")
    b = ctx.conn(accept="any")
    t = ok(a, "export", handle=h, rights=["read"])
    r = ok(a, "import", token=t["token"])
    e = expect_err(a, "send", "EPERM", handle=r["handle"], to=b.session["clientId"])
    check("share" in e["message"], f"send without share names it: {e['message']}")
    expect_err(a, "send", "EINVAL", handle=h, to=b.session["clientId"], rights=["fly"])
    expect_err(a, "send", "EINVAL", handle=h)


@case("send.reserved-slots")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn(accept="any")
    lim = b.session["limits"]
    h = alloc(a, size=10)["handle"]
    n = lim["maxHandles"] - lim["reservedHandles"]
    ids = [a.submit("send", handle=h, to=b.session["clientId"]) for _ in range(n + 1)]
    results = [a.read_response() for _ in ids]
    okc = sum(1 for r in results if "result" in r)
    eq(okc, n, "incoming handles stop at maxHandles - reservedHandles")
    last = results[-1]
    eq(last.get("error", {}).get("code"), "EMFILE", "the next send")
    d = last["error"].get("details") or {}
    for k in ("handles", "mappings", "registrations", "maxHandles", "reserved"):
        check(k in d, f"EMFILE details lack {k}: {short(d)}")
    eq(alloc(b, size=10)["handle"], n, "the receiver's own alloc still gets a slot")


# --------------------------------------------------------------------------
# export, import (§5)
# --------------------------------------------------------------------------

@case("quota.principal-bytes")
def _(ctx):
    """§4: a principal's use counts live buffers of all its connections until freed, whatever keeps
    them alive, even after the allocating client left."""
    a = ctx.conn()
    b = ctx.conn()
    adm = ctx.admin()
    before = my_client(b)["principalBytes"]
    adm_before = my_client(adm)["principalBytes"]
    h = alloc(a, "default", 100000)
    u = h["usize"]
    eq(my_client(a)["bytes"], u, "clients[].bytes of the allocating client")
    eq(my_client(b)["principalBytes"], before + u, "another anonymous connection sees the principal's use")
    eq(my_client(adm)["principalBytes"], adm_before, "the cookie principal is another principal")
    t = ok(a, "export", handle=h["handle"])["token"]
    a.close()
    left(b, a.session["clientId"])
    eq(my_client(b)["principalBytes"], before + u, "a token in flight keeps the use after the client left")
    r = ok(adm, "import", token=t)
    eq(my_client(b)["principalBytes"], before + u, "use stays with the allocating principal")
    eq(my_client(adm)["bytes"], 0, "the importer's own bytes")
    ok(adm, "close", handle=r["handle"])
    eq(my_client(b)["principalBytes"], before, "freed")


@case("tokens.export-import")
def _(ctx):
    a = ctx.conn()
    b = ctx.conn()
    h = alloc(a, size=4096)
    t = ok(a, "export", handle=h["handle"])
    eq(sorted(t), ["expiresInMs", "rights", "token"], "export result members")
    check(re.fullmatch(r"[A-Za-z0-9_-]{32}", t["token"]) is not None, f"token {t['token']!r}: 32 base64url chars")
    check(TYPES["number"](t["expiresInMs"]) and 29000 <= t["expiresInMs"] <= 30000, f"expiresInMs {t['expiresInMs']}")
    eq(sorted(t["rights"]), sorted(RIGHTS), "export rights default to the handle's")
    eq(info(a, h["handle"])["refs"]["inflight"], 1, "refs.inflight while the token is in flight")
    ok(a, "close", handle=h["handle"])
    r = ok(b, "import", token=t["token"])
    shape(r, HANDLE_DESC, "import")
    eq(r["buffer"], h["buffer"], "the token's buffer survived its last handle")
    eq(r["handle"], 0, "import: lowest free handle")
    eq(r["refs"]["inflight"], 0, "refs.inflight after import")
    e1 = expect_err(b, "import", "ENOENT", token=t["token"])
    e2 = expect_err(b, "import", "ENOENT", token="A" * 32)
    eq(e1["message"], e2["message"], "used and unknown tokens answer the same message")
    expired = ok(b, "status")["buffers"]["tokensExpired"]
    t2 = ok(b, "export", handle=0, ttlMs=1)
    time.sleep(0.05)
    e3 = expect_err(a, "import", "ENOENT", token=t2["token"])
    eq(e3["message"], e2["message"], "expired tokens answer the same message")
    eq(ok(b, "status")["buffers"]["tokensExpired"], expired + 1, "status.buffers.tokensExpired")
    expect_err(b, "export", "EINVAL", handle=0, ttlMs=0)
    expect_err(b, "export", "EINVAL", handle=0, ttlMs=86400001)
    eq(ok(b, "export", handle=0, ttlMs=86400000)["expiresInMs"] > 86000000, True, "ttlMs 86400000")
    expect_err(b, "import", "EINVAL", {})
    # §4: when a connection closes, its exported tokens stay valid until they expire
    x = ctx.conn()
    xb = alloc(x, size=10)["buffer"]
    xt = ok(x, "export", handle=0)["token"]
    x.close()
    left(b, x.session["clientId"])
    eq(ok(b, "import", token=xt)["buffer"], xb, "a token outlives its exporter's connection")


@case("tokens.counters")
def _(ctx):
    a = ctx.conn()
    before = ok(a, "status")["buffers"]
    h = alloc(a, size=10)["handle"]
    t = ok(a, "export", handle=h)["token"]
    mid = ok(a, "status")["buffers"]
    eq(mid["tokensIssued"], before["tokensIssued"] + 1, "tokensIssued")
    eq(mid["tokensInFlight"], before["tokensInFlight"] + 1, "tokensInFlight")
    ok(a, "import", token=t)
    after = ok(a, "status")["buffers"]
    eq(after["tokensImported"], before["tokensImported"] + 1, "tokensImported")
    eq(after["tokensInFlight"], before["tokensInFlight"], "tokensInFlight after import")


@case("tokens.emfile")
def _(ctx):
    c = ctx.conn()
    mx = c.session["limits"]["maxTokens"]
    h = alloc(c, size=10)["handle"]
    # Short-lived tokens, so that other cases of this principal can export
    # again soon. On a busy machine issuing them all may take longer than
    # their life (the first expire before the last are made): then wait for
    # them to go and try again with a life well beyond what issuing took.
    ttl = 1500
    for attempt in range(4):
        t0 = time.monotonic()
        ids = [c.submit("export", handle=h, ttlMs=ttl) for _ in range(mx + 1)]
        res = [c.read_response() for _ in ids]
        took = time.monotonic() - t0
        errs = [r["error"] for r in res if "error" in r]
        time.sleep(ttl / 1000 + 0.2)  # let them expire
        if errs or took * 1000 < ttl * 0.8:
            break
        ttl = min(60_000, int(took * 3000) + ttl)
    check(errs, f"{mx + 1} exports in flight, none refused (issuing them took {took:.2f} s, tokens lived {ttl} ms)")
    e = errs[0]
    eq(e["code"], "EMFILE", "export over maxTokens")
    d = e.get("details") or {}
    eq((d.get("tokens"), d.get("maxTokens")), (mx, mx), "details {tokens, maxTokens}")
    ok(c, "export", handle=h, ttlMs=1)


# --------------------------------------------------------------------------
# buffers listing (§5)
# --------------------------------------------------------------------------

LISTING = {"buffer": "uint", "pool": "str", "cache": "str", "size": "uint", "usize": "uint",
           "kind": E("small", "large", "direct"), "creator": "uint",
           "holders": [{"client": "uint", "name": ("str", "nil"), "handles": "uint"}],
           "refs": {"handles": "uint", "inflight": "uint", "registrations": "uint", "mappings": "uint"}}


@case("buffers.paging")
def _(ctx):
    c = ctx.conn()
    other = ctx.conn()
    alloc(other, size=10)
    mine = [alloc(c, size=10 + i)["buffer"] for i in range(5)]
    ok(c, "dup", handle=0)
    r = ok(c, "buffers")
    eq(sorted(r), ["buffers", "more"], "buffers result members")
    shape(r["buffers"], [LISTING], "buffers")
    eq([b["buffer"] for b in r["buffers"]], sorted(mine), "a non-admin lists the buffers it holds, lowest id first")
    eq(r["more"], False, "more")
    first = r["buffers"][0]
    eq(first["holders"], [{"client": c.session["clientId"], "name": c.session["name"], "handles": 2}], "holders")
    eq(first["creator"], c.session["clientId"], "creator")
    got, after, pages = [], None, 0
    while True:
        f = {"limit": 2} if after is None else {"limit": 2, "after": after}
        p = ok(c, "buffers", f)
        pages += 1
        check(len(p["buffers"]) <= 2, "limit honoured")
        got += [b["buffer"] for b in p["buffers"]]
        if not p["more"]:
            break
        after = p["buffers"][-1]["buffer"]
        check(pages < 10, "paging does not end")
    eq(got, sorted(mine), "pages together")
    eq(pages, 3, "5 buffers in pages of 2")
    eq(ok(c, "buffers", after=max(mine))["buffers"], [], "after the last id")
    expect_err(c, "buffers", "EINVAL", limit=0)
    expect_err(c, "buffers", "EINVAL", limit=10001)
    eq(len(ok(c, "buffers", limit=10000)["buffers"]), 5, "limit 10000")
    eq([b["buffer"] for b in ok(c, "buffers", pool="huge")["buffers"]], [], "pool filter")


@case("buffers.admin-lists-all")
def _(ctx):
    a = ctx.conn()
    b = alloc(a, size=10)["buffer"]
    adm = ctx.admin()
    r = ok(adm, "buffers", client=a.session["clientId"])
    eq([x["buffer"] for x in r["buffers"]], [b], "admin lists another client's buffers (client filter)")
    allb = []
    after = 0
    while True:
        p = ok(adm, "buffers", after=after, limit=10000)
        allb += [x["buffer"] for x in p["buffers"]]
        if not p["more"]:
            break
        after = p["buffers"][-1]["buffer"]
    check(b in allb, "admin's full listing includes it")
    eq(len(allb), ok(adm, "status")["buffers"]["live"], "admin lists every live buffer (status.buffers.live)")


# --------------------------------------------------------------------------
# drivers, constraints, merge, register, unregister (§5)
# --------------------------------------------------------------------------

CONSTRAINTS = {"align?": "uint", "contiguous?": "bool", "maxSegments?": "uint", "maxSegmentSize?": "uint",
               "segmentBoundary?": "uint", "cache?": ["str"], "coherent?": "bool", "regions?": ["str"],
               "dmaMask?": "uint", "iommu?": ({"pageSizes": ["uint"], "iovaSize": "uint"}, "nil"), "bounce?": "bool"}


@case("drivers.list-and-constraints")
def _(ctx):
    c = ctx.conn()
    r = ok(c, "drivers")
    eq(sorted(r), ["drivers"], "drivers result members")
    shape(r["drivers"], [DRIVER], "drivers")
    names = {d["name"]: d for d in r["drivers"]}
    for n in ("gpu", "jpeg", "capture", "video", "display", "dsp", "nic"):
        check(n in names, f"built-in driver {n} missing")
        eq(names[n]["kind"], "builtin", f"{n} kind")
        k = ok(c, "constraints", driver=n)
        eq(sorted(k), ["constraints", "description", "driver", "kind"], "constraints result members")
        shape(k["constraints"], CONSTRAINTS, f"constraints({n})")
        eq(k["description"], names[n]["description"], f"{n} description")
        has_iommu = isinstance(k["constraints"].get("iommu"), dict)
        eq(names[n]["iommu"], has_iommu, f"{n}: status iommu is a boolean (whether it has one)")
        eq(names[n]["coherent"], bool(k["constraints"].get("coherent")), f"{n} coherent")
    e = expect_err(c, "constraints", "ENOENT", driver="nosuchdriver")
    eq(details(e, "driver")["driver"], "nosuchdriver", "details.driver")


@case("merge.what-if")
def _(ctx):
    c = ctx.conn()
    r = ok(c, "merge", drivers=["gpu", "display"])
    eq(sorted(r), ["merged", "pools"], "merge result members")
    m = r["merged"]
    for k in ("drivers", "align", "contiguous", "maxSegments", "maxSegmentSize", "segmentBoundary", "cache",
              "regions", "dmaMask", "addressLimit", "coherent", "iommuDevices", "bounceDevices"):
        check(k in m, f"merged lacks {k}")
    eq(m["align"], 4096, "align (LCM)")
    eq(m["contiguous"], True, "contiguous (display has no IOMMU and needs it)")
    eq(m["cache"], ["writecombine"], "cache intersection")
    eq(m["regions"], None, "regions nil: any")
    eq(m["dmaMask"], 32, "dmaMask minimum")
    eq(m["addressLimit"], 2**32, "addressLimit 2^32 (display has no IOMMU and cannot bounce)")
    eq(m["coherent"], False, "coherent")
    eq(m["segmentBoundary"], None, "segmentBoundary nil when none")
    shape(r["pools"], [{"name": "str", "fits": "bool", "allowed": "bool", "misfits": [MISMATCH]}], "pools")
    pools = {p["name"]: p for p in r["pools"]}
    eq(pools["contig"]["fits"], True, "contig fits gpu+display")
    eq(pools["contig"]["misfits"], [], "contig misfits")
    eq(pools["default"]["fits"], False, "default does not fit")
    dm = {x["attribute"]: x for x in pools["default"]["misfits"]}
    check("cache" in dm, f"default misfits lack cache: {short(dm)}")
    eq(dm["cache"]["actual"], "writeback", "misfit cache actual")
    m2 = ok(c, "merge", drivers=["jpeg", "capture"])["merged"]
    eq(m2["align"], 65536, "LCM of 65536 and 4096")
    m3 = ok(c, "merge", drivers=["nic"])["merged"]
    eq(m3["coherent"], True, "coherent: all devices snoop")
    eq(m3["dmaMask"], 64, "nic dmaMask")
    # 2^64 would not fit the 53 bits §2 promises; §5 is silent: accept nil ("none") or 2^64
    check(m3["addressLimit"] in (None, 2**64), f"nic (64-bit mask) addressLimit {m3['addressLimit']!r}")
    e = expect_err(c, "merge", "ENOENT", drivers=["gpu", "nosuchdriver"])
    eq(details(e, "driver")["driver"], "nosuchdriver", "merge ENOENT details.driver")


@case("merge.conflicts")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "merge", "EINVAL", drivers=["display", "nic"])
    d = details(e, "conflicts")
    shape(d["conflicts"], [{"attribute": "str", "message": "str", "wants": [{"driver": "str", "value": "any"}]}],
          "details.conflicts")
    cache = [x for x in d["conflicts"] if x["attribute"] == "cache"]
    check(cache, f"no cache conflict: {short(d)}")
    wants = {w["driver"]: w["value"] for w in cache[0]["wants"]}
    eq(wants, {"display": ["writecombine"], "nic": ["writeback"]}, "wants")
    check("cache" in e["message"], f"message lists the attribute: {e['message']}")
    e = expect_err(c, "merge", "EINVAL", drivers=["dsp", "display", "nic"])


@case("register.success-and-unregister")
def _(ctx):
    c = ctx.conn()
    disp = lambda: [d for d in ok(c, "drivers")["drivers"] if d["name"] == "display"][0]  # noqa: E731
    d0 = disp()
    h = ok(c, "alloc", {"for": ["display"], "size": 65536})
    r = ok(c, "register", handle=h["handle"], driver="display")
    d1 = disp()
    eq((d1["registrations"], d1["registered"]), (d0["registrations"] + 1, d0["registered"] + 1),
       "drivers[].registrations and registered after a register")
    u0 = alloc(c, "default", 4096)
    expect_err(c, "register", "EATTR", handle=u0["handle"], driver="display")
    eq(disp()["refused"], d0["refused"] + 1, "drivers[].refused after a refusal")
    for k in ("driver", "buffer", "deviceAddress", "segments", "iommu", "bounced", "direction"):
        check(k in r, f"register result lacks {k}")
    eq(r["direction"], "bidirectional", "direction: bidirectional by default")
    eq((r["driver"], r["buffer"]), ("display", h["buffer"]), "driver, buffer")
    eq(r["iommu"], None, "iommu nil for a device without one")
    eq(r["bounced"], 0, "bounced")
    shape(r["segments"], [SEGMENT], "segments")
    eq(r["deviceAddress"], r["segments"][0]["addr"], "deviceAddress = first segment")
    eq(r["segments"], h["segments"], "no IOMMU: the device sees physical addresses")
    i = info(c, h["handle"])
    eq(i["registrations"], ["display"], "info.registrations")
    eq(i["refs"]["registrations"], 1, "refs.registrations")
    eq(my_client(c)["registrations"], 1, "clients[].registrations")
    expect_err(c, "register", "EBUSY", handle=h["handle"], driver="display")
    u = ok(c, "unregister", driver="display", handle=h["handle"])
    eq(u, {"driver": "display", "buffer": h["buffer"], "unregistered": True}, "unregister result")
    e = expect_err(c, "unregister", "ENOENT", driver="display", handle=h["handle"])
    check("unregister-not-registered" in kinds_for(c, h["buffer"]), "unregister-not-registered violation recorded")
    expect_err(c, "unregister", "EINVAL", driver="display", handle=h["handle"], buffer=h["buffer"])
    expect_err(c, "unregister", "EINVAL", driver="display")
    e = expect_err(c, "register", "ENOENT", handle=h["handle"], driver="nosuchdriver")
    eq(details(e, "driver")["driver"], "nosuchdriver", "details.driver")


@case("register.unregister-by-buffer-id")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "register", handle=h["handle"], driver="nic")
    ok(c, "close", handle=h["handle"])
    u = ok(c, "unregister", driver="nic", buffer=h["buffer"])
    eq(u["unregistered"], True, "unregister {buffer} by the registrant that no longer holds a handle")


@case("register.eattr-mismatch-types")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "uncached", 3 * MiB)
    segs = h["segments"]
    end = max(s["addr"] + s["len"] for s in segs)
    e = expect_err(c, "register", "EATTR", handle=h["handle"], driver="display")
    d = details(e, "driver", "buffer", "mismatches", "hint")
    eq((d["driver"], d["buffer"]), ("display", h["buffer"]), "details driver, buffer")
    check(isinstance(d["hint"], str) and d["hint"], f"details.hint {d['hint']!r}")
    shape(d["mismatches"], [MISMATCH], "mismatches")
    mm = {m["attribute"]: m for m in d["mismatches"]}
    expected = {"cache"} | ({"contiguous"} if len(segs) > 1 else set()) | ({"dmaMask"} if end > 2**32 else set())
    eq(set(mm), expected, "every failing attribute (cache; contiguous if several segments; dmaMask above 4 GiB)")
    eq(mm["cache"]["required"], ["writecombine"], "cache required: array of string")
    eq(mm["cache"]["actual"], "uncached", "cache actual: string")
    if "contiguous" in mm:
        eq(mm["contiguous"]["required"], True, "contiguous required")
        eq(mm["contiguous"]["actual"], f"{len(segs)} segments", "contiguous actual")
    if "dmaMask" in mm:
        eq(mm["dmaMask"]["required"], "32 bits (below 0x100000000)", "dmaMask required")
        check(isinstance(mm["dmaMask"]["actual"], str), f"dmaMask actual is a string: {mm['dmaMask']['actual']!r}")
    e = expect_err(c, "register", "EATTR", handle=h["handle"], driver="dsp")
    mm = {m["attribute"]: m for m in details(e, "mismatches")["mismatches"]}
    check("regions" in mm, f"dsp: regions mismatch missing: {short(mm)}")
    eq((mm["regions"]["required"], mm["regions"]["actual"]), (["tcm"], "dram"), "regions required/actual")
    # align: a small buffer not 64 KiB-aligned vs jpeg (align 65536)
    for _ in range(4):
        s = alloc(c, "default", 100)
        if s["segments"][0]["addr"] % 65536:
            break
    e = expect_err(c, "register", "EATTR", handle=s["handle"], driver="jpeg")
    mm = {m["attribute"]: m for m in details(e, "mismatches")["mismatches"]}
    check("align" in mm, f"jpeg: align mismatch missing: {short(mm)}")
    eq(mm["align"]["required"], 65536, "align required uint")
    check(is_uint(mm["align"]["actual"]) and mm["align"]["actual"] < 65536, f"align actual {mm['align']['actual']!r}")
    eq(info(c, h["handle"])["registrations"], [], "a refused register changes nothing")


@case("register.iommu-and-bounce")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "wc", 4 * MiB)
    r = ok(c, "register", handle=h["handle"], driver="gpu")
    shape(r["iommu"], {"entries": "map", "iova": "uint", "iovaSize": "uint"}, "register.iommu")
    eq(r["iommu"]["entries"], {"2097152": 2}, "hugepage-backed buffer maps with 2 MiB entries")
    eq(r["segments"], [{"addr": r["deviceAddress"], "len": 4 * MiB}], "one contiguous IOVA range")
    # §5 does not say what iova/iovaSize are; read as the IOVA range given to this registration
    eq(r["iommu"]["iova"], r["deviceAddress"], "iommu.iova = deviceAddress")
    check(4 * MiB <= r["iommu"]["iovaSize"] <= 4294967296, f"iommu.iovaSize {r['iommu']['iovaSize']}")
    eq(r["bounced"], 0, "bounced")
    gpu = [d for d in ok(c, "drivers")["drivers"] if d["name"] == "gpu"][0]
    check(gpu["iommuEntries"].get("2097152", 0) >= 2, f"drivers[].iommuEntries {gpu['iommuEntries']}")
    check(gpu["iovaUsed"] >= 4 * MiB, f"drivers[].iovaUsed {gpu['iovaUsed']}")
    b = alloc(c, "default", 8192)
    check(b["segments"][0]["addr"] >= 2**32, "test assumption: default-pool buffers lie above 4 GiB")
    r = ok(c, "register", handle=b["handle"], driver="capture")
    eq(r["bounced"], 8192, "bounced: bytes reached through bounce slots")
    check(all(s["addr"] + s["len"] <= 2**32 for s in r["segments"]), "bounced segments below the mask")
    st = ok(c, "status")
    check(st["dma"]["bounce"]["used"] > 0, "dma.bounce.used")


@case("driver.client-registration-events")
def _(ctx):
    drv = ctx.conn()
    dname = uname("drv")
    r = ok(drv, "driver.attach", name=dname, constraints={})
    eq(r["name"], dname, "attach result name")
    check("constraints" in r, "attach result constraints")
    ents = {d["name"]: d for d in ok(drv, "drivers")["drivers"]}
    eq((ents[dname]["kind"], ents[dname]["owner"]), ("client", drv.session["clientId"]), "client driver entry")
    e = expect_err(ctx.conn(), "driver.attach", "EEXIST", name=dname, constraints={})
    a = ctx.conn()
    alloc(a, size=1)
    h = alloc(a, "default", 4096)
    reg = ok(a, "register", handle=h["handle"], driver=dname)
    ev = event(drv, "registration")
    no_id(ev)
    for k in ("driver", "handle", "buffer", "size", "deviceAddress", "segments", "registrant", "rights", "direction"):
        check(k in ev, f"registration event lacks {k}")
    eq((ev["driver"], ev["buffer"], ev["size"], ev["registrant"]),
       (dname, h["buffer"], 4096, a.session["clientId"]), "registration driver, buffer, size, registrant")
    eq(ev["deviceAddress"], reg["deviceAddress"], "registration deviceAddress")
    i = info(drv, ev["handle"])
    eq(i["buffer"], h["buffer"], "the driver got a handle of its own")
    eq(sorted(i["rights"]), sorted(ev["rights"]), "registration rights")
    ok(a, "write", handle=h["handle"], offset=0, data=b"dev")
    ok(drv, "device.write", driver=dname, handle=ev["handle"], offset=3, data=b"ice")
    e = expect_err(a, "device.write", "EPERM", driver=dname, handle=h["handle"], offset=0, data=b"x")
    ok(a, "unregister", driver=dname, handle=h["handle"])
    u = event(drv, "unregistration")
    eq((u["driver"], u["handle"], u["buffer"], u["closed"]), (dname, ev["handle"], h["buffer"], True),
       "unregistration event")
    expect_err(drv, "info", "EBADF", handle=ev["handle"])
    h2 = alloc(a, "default", 4096)
    ok(a, "register", handle=h2["handle"], driver=dname)
    ev2 = event(drv, "registration")
    ok(drv, "close", handle=ev2["handle"])
    ok(a, "unregister", driver=dname, handle=h2["handle"])
    u2 = event(drv, "unregistration")
    eq((u2["buffer"], u2["closed"]), (h2["buffer"], False), "unregistration closed: false when the driver had closed it")
    e = expect_err(a, "driver.detach", "EPERM", name=dname)
    eq(details(e, "driver")["driver"], dname, "EPERM details.driver")
    expect_err(drv, "driver.detach", "ENOENT", name=uname("none"))
    eq(ok(drv, "driver.detach", name=dname), {"name": dname, "leaks": 0}, "detach result")


@case("driver.own-registration-event-before-response")
def _(ctx):
    drv = ctx.conn()
    dname = uname("drv")
    ok(drv, "driver.attach", name=dname, constraints={"cache": ["writeback"]})
    h = alloc(drv, "default", 4096)
    ok(drv, "register", handle=h["handle"], driver=dname)
    check(any(e.get("event") == "registration" for e in drv.events),
          "§3: an event caused by the connection's own request comes before that request's response")


@case("driver.leak-event")
def _(ctx):
    drv = ctx.conn()
    dname = uname("drv")
    ok(drv, "driver.attach", name=dname, constraints={})
    a = ctx.conn()
    h = alloc(a, "default", 4096)
    ok(a, "register", handle=h["handle"], driver=dname)
    event(drv, "registration")
    before = ok(a, "status")["dma"]["leaks"]
    drv.close()
    lk = event(a, "leak")
    no_id(lk)
    for k in ("driver", "buffer", "registrant", "reason"):
        check(k in lk, f"leak event lacks {k}")
    eq((lk["driver"], lk["buffer"], lk["registrant"]), (dname, h["buffer"], a.session["clientId"]), "leak event")
    check(isinstance(lk["reason"], str), "leak reason")
    eq(ok(a, "status")["dma"]["leaks"], before + 1, "dma.leaks")
    eq(info(a, h["handle"])["registrations"], [], "registration dropped")


@case("driver.attach-errors")
def _(ctx):
    c = ctx.conn()
    expect_err(c, "driver.attach", "EEXIST", name="gpu", constraints={})
    expect_err(c, "driver.attach", "EINVAL", name=uname("d"), constraints={"align": 3})
    expect_err(c, "driver.attach", "EINVAL", name=uname("d"), constraints={"maxSegmentSize": 100})
    expect_err(c, "driver.attach", "EINVAL", name=uname("d"), constraints={"dmaMask": 65})
    expect_err(c, "driver.attach", "EINVAL", name=uname("d"), constraints={"colour": "red"})
    expect_err(c, "driver.detach", "EPERM", name="gpu")


# --------------------------------------------------------------------------
# device ops (§5)
# --------------------------------------------------------------------------

@case("device.write-read-fill-copy")
def _(ctx):
    c = ctx.conn()
    a = ok(c, "alloc", {"for": ["display"], "size": 8192})
    b = ok(c, "alloc", {"for": ["display"], "size": 4096})
    for x in (a, b):
        ok(c, "register", handle=x["handle"], driver="display")
    eq(ok(c, "device.write", driver="display", handle=a["handle"], offset=100, data=b"pixels"), {"written": 6},
       "device.write")
    eq(ok(c, "device.read", driver="display", handle=a["handle"], offset=98, length=10)["data"],
       b"\0\0pixels\0\0", "device.read")
    eq(ok(c, "device.fill", driver="display", handle=a["handle"], offset=200, length=50, value=0x5A),
       {"filled": 50}, "device.fill")
    eq(ok(c, "device.read", driver="display", handle=a["handle"], offset=199, length=52)["data"],
       b"\0" + b"\x5a" * 50 + b"\0", "filled bytes")
    eq(ok(c, "device.copy", driver="display", src=a["handle"], dst=b["handle"]), {"copied": 4096},
       "device.copy: as much as fits")
    eq(ok(c, "device.read", driver="display", handle=b["handle"], offset=100, length=6)["data"], b"pixels",
       "copied bytes")
    e = expect_err(c, "device.read", "EINVAL", driver="display", handle=a["handle"], offset=8190, length=3)
    details(e, "offset", "length", "size")
    expect_err(c, "device.fill", "EINVAL", driver="display", handle=a["handle"], offset=0, length=1, value=256)
    n = alloc(c, "default", 4096)
    e = expect_err(c, "device.read", "ENOENT", driver="display", handle=n["handle"], offset=0, length=1)
    d = details(e, "driver", "buffer")
    eq((d["driver"], d["buffer"]), ("display", n["buffer"]), "ENOENT details {driver, buffer}")
    expect_err(c, "device.read", "EBADF", driver="display", handle=99, offset=0, length=1)
    t = ok(c, "export", handle=a["handle"], rights=["read"])
    ro = ok(c, "import", token=t["token"])
    expect_err(c, "device.write", "EPERM", driver="display", handle=ro["handle"], offset=0, data=b"x")
    eq(ok(c, "device.read", driver="display", handle=ro["handle"], offset=100, length=6)["data"], b"pixels",
       "device.read needs only read")


# --------------------------------------------------------------------------
# coherency: sync, map, unmap, fence, violations (§5 coherency model)
# --------------------------------------------------------------------------

SYNC_RESULT = {"phase": E("start", "end"), "access": E("read", "write", "rw"), "cleaned": "uint",
               "invalidated": "uint", "flushed": "uint"}


@case("coherency.stale-read")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "register", handle=h["handle"], driver="video")  # dma_map: the device owns it, the CPU may prefetch
    ok(c, "device.write", driver="video", handle=h["handle"], offset=0, data=b"D" * 64)
    got = ok(c, "read", handle=h["handle"], offset=0, length=64)["data"]
    eq(got, bytes(64), "a CPU read without sync start returns the stale prefetched line")
    kinds = kinds_for(c, h["buffer"])
    check("cpu-access-while-device-owned" in kinds, f"violations {kinds}")
    check("stale-read" in kinds, f"violations {kinds}")
    evs = [e for e in c.events if e.get("event") == "violation" and e.get("buffer") == h["buffer"]]
    check({e["kind"] for e in evs} >= {"stale-read", "cpu-access-while-device-owned"},
          f"violation events to the holder (before the response): {[e.get('kind') for e in evs]}")
    for e in evs:
        no_id(e)
        shape({k: v for k, v in e.items() if k != "event"}, VIOLATION, "violation event")
    v = [x for x in violations_for(c, h["buffer"]) if x["kind"] == "stale-read"][0]
    shape(v, VIOLATION, "violation")
    eq((v["client"]["id"], v["buffer"], v["driver"], v["mode"]), (c.session["clientId"], h["buffer"], "video", "warn"),
       "violation client, buffer, driver, mode")
    # the right way
    n = len(violations_for(c, h["buffer"]))
    s = ok(c, "sync", handle=h["handle"], phase="start", access="read")
    shape(s, SYNC_RESULT, "sync")
    check(s["invalidated"] >= 1, f"sync start read invalidates: {s}")
    eq(ok(c, "read", handle=h["handle"], offset=0, length=64)["data"], b"D" * 64, "read inside the bracket")
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    eq(len(violations_for(c, h["buffer"])), n, "no violation for the bracketed read")


@case("coherency.lost-write")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "register", handle=h["handle"], driver="video")
    ok(c, "write", handle=h["handle"], offset=0, data=b"C" * 64)  # no bracket: dirty line in the CPU cache
    eq(ok(c, "device.read", driver="video", handle=h["handle"], offset=0, length=64)["data"], bytes(64),
       "a non-coherent device reads memory, not the dirty line")
    kinds = kinds_for(c, h["buffer"])
    check("lost-write" in kinds, f"violations {kinds}")
    g = alloc(c, "default", 4096)
    ok(c, "register", handle=g["handle"], driver="video")
    ok(c, "sync", handle=g["handle"], phase="start", access="write")
    ok(c, "write", handle=g["handle"], offset=0, data=b"C" * 64)
    s = ok(c, "sync", handle=g["handle"], phase="end", access="write")
    check(s["cleaned"] >= 1, f"sync end write cleans the dirty line: {s}")
    eq(ok(c, "device.read", driver="video", handle=g["handle"], offset=0, length=64)["data"], b"C" * 64,
       "the device sees the synced write")
    eq(kinds_for(c, g["buffer"]), [], "the bracketed flow records nothing")


@case("coherency.coherent-device-snoops")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "register", handle=h["handle"], driver="nic")
    ok(c, "write", handle=h["handle"], offset=0, data=b"N" * 64)
    eq(ok(c, "device.read", driver="nic", handle=h["handle"], offset=0, length=64)["data"], b"N" * 64,
       "a coherent device sees dirty lines")
    ok(c, "device.write", driver="nic", handle=h["handle"], offset=64, data=b"M" * 64)
    eq(ok(c, "read", handle=h["handle"], offset=64, length=64)["data"], b"M" * 64, "and the CPU sees its writes")
    eq(kinds_for(c, h["buffer"]), [], "no violations with a coherent device")


@case("coherency.bracket-violations")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "register", handle=h["handle"], driver="video")
    ok(c, "sync", handle=h["handle"], phase="end", access="write")
    ok(c, "sync", handle=h["handle"], phase="start", access="read")
    ok(c, "sync", handle=h["handle"], phase="start", access="read")
    ok(c, "write", handle=h["handle"], offset=0, data=b"x")
    ok(c, "device.read", driver="video", handle=h["handle"], offset=0, length=1)
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    e = expect_err(c, "sync", "EINVAL", handle=h["handle"], phase="start", access="read", offset=4000, length=200)
    kinds = kinds_for(c, h["buffer"])
    for k in ("end-without-start", "start-while-open", "cpu-write-in-read-bracket", "device-access-during-cpu-access",
              "sync-out-of-range"):
        check(k in kinds, f"{k} not recorded: {kinds}")
    ok(c, "sync", handle=h["handle"], phase="start", access="write")
    ok(c, "write", handle=h["handle"], offset=0, data=b"y")
    ok(c, "unregister", driver="video", handle=h["handle"])
    check("unsynced-unregister" in kinds_for(c, h["buffer"]), "unsynced-unregister not recorded")
    expect_err(c, "sync", "EINVAL", handle=h["handle"], phase="middle", access="read")
    expect_err(c, "sync", "EINVAL", handle=h["handle"], phase="start", access="exec")


@case("coherency.violations-op")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    r = ok(c, "violations")
    for k in ("mode", "total", "byKind", "violations"):
        check(k in r, f"violations result lacks {k}")
    eq(r["mode"], "warn", "default mode")
    shape(r["violations"], [VIOLATION], "violations")
    seqs = [v["seq"] for v in r["violations"]]
    eq(seqs, sorted(seqs), "newest last")
    eq(r["total"], sum(r["byKind"].values()), "total = sum of byKind")
    f = ok(c, "violations", buffer=h["buffer"], kind="end-without-start")
    eq([v["kind"] for v in f["violations"]], ["end-without-start"] * 2, "kind and buffer filters")
    eq(len(ok(c, "violations", buffer=h["buffer"], limit=1)["violations"]), 1, "limit")
    st = ok(c, "status")["coherency"]["violations"]
    eq(st["total"], ok(c, "violations")["total"], "status.coherency.violations.total")


@case("drivers.direction")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 8192)
    r = ok(c, "register", handle=h["handle"], driver="video", direction="to-device")
    eq(r["direction"], "to-device", "register direction")
    ok(c, "device.write", driver="video", handle=h["handle"], offset=0, data=b"x")
    ok(c, "sync", handle=h["handle"], phase="start", access="read")
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    eq([v["kind"] for v in ok(c, "violations", buffer=h["buffer"])["violations"]],
       ["device-write-to-read-only", "sync-different-direction", "sync-read-only-for-cpu", "sync-different-direction"],
       "debug.c's direction checks")
    h2 = alloc(c, "default", 4096)
    expect_err(c, "register", "EINVAL", handle=h2["handle"], driver="video", direction="sideways")
    eq(info(c, h2["handle"])["refs"]["registrations"], 0, "a bad direction registers nothing")


@case("coherency.map-unmap")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    m = ok(c, "map", handle=h["handle"])
    eq(sorted(m), ["bytes", "cache", "fd", "mapping", "rights", "size"], "map result members")
    eq((m["cache"], m["size"], m["bytes"], m["fd"]), ("writeback", 4096, 4096, False), "map cache, size, bytes, fd (no nonce: no descriptor)")
    eq(sorted(m["rights"]), sorted(RIGHTS), "map rights")
    ok(c, "write", mapping=m["mapping"], offset=0, data=b"via-map")
    eq(ok(c, "read", handle=h["handle"], offset=0, length=7)["data"], b"via-map", "same bytes")
    eq(info(c, h["handle"])["refs"]["mappings"], 1, "refs.mappings")
    eq(my_client(c)["mappings"], 1, "clients[].mappings")
    e = expect_err(c, "map", "EINVAL", handle=h["handle"], cache="uncached")
    check("uncached" in e["message"] and "writeback" in e["message"], f"names both policies: {e['message']}")
    ok(c, "close", handle=h["handle"])
    eq(ok(c, "read", mapping=m["mapping"], offset=0, length=7)["data"], b"via-map", "a mapping outlives close")
    eq(ok(c, "unmap", mapping=m["mapping"]), {"mapping": m["mapping"], "unmapped": True}, "unmap result")
    e = expect_err(c, "unmap", "EBADF", mapping=m["mapping"])
    eq(details(e, "mapping")["mapping"], m["mapping"], "EBADF details.mapping")
    expect_err(c, "read", "EBADF", mapping=m["mapping"], offset=0, length=1)
    g = alloc(c, "default", 4096)
    t = ok(c, "export", handle=g["handle"], rights=["read"])
    ro = ok(c, "import", token=t["token"])
    mr = ok(c, "map", handle=ro["handle"])
    e = expect_err(c, "write", "EPERM", mapping=mr["mapping"], offset=0, data=b"x")
    d = details(e, "mapping", "missing")
    eq(d["mapping"], mr["mapping"], "details.mapping")
    check(d["missing"] in ("write", ["write"]), f"details.missing {d['missing']!r}")
    expect_err(c, "read", "EINVAL", handle=g["handle"], mapping=mr["mapping"], offset=0, length=1)


@case("coherency.write-combine-and-fence")
def _(ctx):
    c = ctx.conn()
    a = alloc(c, "wc", 4096)
    b = alloc(c, "wc", 4096)
    for x in (a, b):
        ok(c, "register", handle=x["handle"], driver="gpu")
        ok(c, "write", handle=x["handle"], offset=0, data=b"W" * 128)
    eq(ok(c, "read", handle=b["handle"], offset=0, length=128)["data"], b"W" * 128,
       "the CPU's own reads see pending write-combine lines")
    eq(ok(c, "device.read", driver="gpu", handle=b["handle"], offset=0, length=128)["data"], bytes(128),
       "devices do not see pending write-combine lines")
    check("lost-write" in kinds_for(c, b["buffer"]), "lost-write on pending WC lines")
    f = ok(c, "fence", handle=a["handle"])
    eq(sorted(f), ["flushed"], "fence result")
    check(f["flushed"] >= 2, f"fence flushed {f['flushed']} lines of 128 bytes")
    eq(ok(c, "fence", handle=a["handle"])["flushed"], 0, "nothing pending after a fence")
    eq(ok(c, "device.read", driver="gpu", handle=a["handle"], offset=0, length=128)["data"], b"W" * 128,
       "the device sees fenced lines")
    check("lost-write" not in kinds_for(c, a["buffer"]), "no lost-write after the fence")


# --------------------------------------------------------------------------
# subscribe / unsubscribe (§5, §8)
# --------------------------------------------------------------------------

ALL_TOPICS = ["alloc", "handles", "drivers", "violations", "hugepages", "clients", "status"]


def act_base(e, topic):
    no_id(e)
    eq(e.get("topic"), topic, "activity topic")
    check(TYPES["number"](e.get("timeMs")), f"activity timeMs {e.get('timeMs')!r}")


@case("subscribe.result-and-unsubscribe")
def _(ctx):
    c = ctx.conn()
    r = ok(c, "subscribe")
    eq(sorted(r["topics"]), sorted(ALL_TOPICS), "default topics: all")
    eq(r["intervalMs"], 1000, "default intervalMs")
    r = ok(c, "subscribe", topics=["alloc"], intervalMs=100)
    eq((r["topics"], r["intervalMs"]), (["alloc"], 100), "subscribing again replaces")
    eq(ok(c, "status")["events"]["subscribers"] >= 1, True, "status.events.subscribers")
    eq(ok(c, "unsubscribe"), {"unsubscribed": True}, "unsubscribe")
    eq(ok(c, "unsubscribe"), {"unsubscribed": False}, "unsubscribe without a subscription")
    expect_err(c, "subscribe", "EINVAL", topics=["weather"])
    expect_err(c, "subscribe", "EINVAL", intervalMs=99)
    expect_err(c, "subscribe", "EINVAL", intervalMs=60001)


@case("subscribe.alloc-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["alloc"])
    a = ctx.conn()
    h = alloc(a, "default", 777)
    e = activity(s, "alloc", "alloc", lambda e: e.get("buffer") == h["buffer"])
    act_base(e, "alloc")
    eq((e.get("pool"), e.get("size"), e.get("client"), e.get("name")),
       ("default", 777, a.session["clientId"], a.session["name"]), "alloc activity pool, size, client, name")
    ok(a, "close", handle=h["handle"])
    e = activity(s, "alloc", "free", lambda e: e.get("buffer") == h["buffer"])
    eq((e.get("pool"), e.get("size")), ("default", 777), "free activity pool, size")
    ok(s, "alloc", pool="default", size=10)
    check(any(x.get("topic") == "alloc" and x.get("kind") == "alloc" and x.get("client") == s.session["clientId"]
              for x in s.events), "own alloc activity arrives before the alloc response")


@case("subscribe.handles-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["handles"])
    a = ctx.conn()
    b = ctx.conn(accept="any")
    h = alloc(a, size=10)
    ok(a, "send", handle=h["handle"], to=b.session["clientId"], rights=["read", "share"])
    e = activity(s, "handles", "send", lambda e: e.get("buffer") == h["buffer"])
    act_base(e, "handles")
    eq((e.get("from"), e.get("fromName"), e.get("to"), e.get("toName"), e.get("rights")),
       (a.session["clientId"], a.session["name"], b.session["clientId"], b.session["name"], ["read", "share"]),
       "send activity from, fromName, to, toName, rights")
    t = ok(a, "export", handle=h["handle"])
    activity(s, "handles", "export", lambda e: e.get("buffer") == h["buffer"])
    ok(b, "import", token=t["token"])
    e = activity(s, "handles", "import", lambda e: e.get("buffer") == h["buffer"])
    for k in ("buffer", "from", "fromName", "to", "toName"):
        check(k in e, f"import activity lacks {k}: {short(e)}")
    eq((e["from"], e["to"]), (a.session["clientId"], b.session["clientId"]),
       "import activity from: the exporter, to: the importer")


@case("subscribe.drivers-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["drivers"])
    a = ctx.conn()
    aid = a.session["clientId"]
    # register through bounce slots: bounced is a byte count
    b = alloc(a, "default", 8192)
    reg = ok(a, "register", handle=b["handle"], driver="capture")
    e = activity(s, "drivers", "register", lambda e: e.get("buffer") == b["buffer"])
    act_base(e, "drivers")
    eq((e.get("driver"), e.get("client")), ("capture", aid), "register activity driver, client")
    eq(e.get("deviceAddress"), reg["deviceAddress"], "register activity deviceAddress")
    eq(e.get("bounced"), reg["bounced"], "register activity bounced = register result's bounced (bytes)")
    eq(e.get("bounced"), 8192, "register activity bounced in bytes")
    # refuse
    u = alloc(a, "uncached", 4096)
    err = expect_err(a, "register", "EATTR", handle=u["handle"], driver="display")
    e = activity(s, "drivers", "refuse", lambda e: e.get("buffer") == u["buffer"])
    eq((e.get("driver"), e.get("client"), e.get("code")), ("display", aid, "EATTR"), "refuse activity")
    eq(e.get("mismatches"), err["details"]["mismatches"], "refuse activity mismatches")
    # unregister
    ok(a, "unregister", driver="capture", handle=b["handle"])
    e = activity(s, "drivers", "unregister", lambda e: e.get("buffer") == b["buffer"])
    eq((e.get("driver"), e.get("buffer"), e.get("client")), ("capture", b["buffer"], aid),
       "unregister activity driver, buffer, client")
    # attach, leak, detach
    d = ctx.conn()
    dname = uname("drv")
    ok(d, "driver.attach", name=dname, constraints={})
    e = activity(s, "drivers", "attach", lambda e: e.get("driver") == dname)
    eq(e.get("client"), d.session["clientId"], "attach activity client")
    g = alloc(a, "default", 4096)
    ok(a, "register", handle=g["handle"], driver=dname)
    ok(d, "driver.detach", name=dname)
    e = activity(s, "drivers", "leak", lambda e: e.get("driver") == dname)
    eq((e.get("buffer"), e.get("client"), e.get("registrant")), (g["buffer"], aid, aid),
       "leak activity buffer, client (the registrant), registrant")
    check(isinstance(e.get("reason"), str), f"leak activity reason {e.get('reason')!r}")
    e = activity(s, "drivers", "detach", lambda e: e.get("driver") == dname)
    eq((e.get("client"), e.get("leaks")), (d.session["clientId"], 1), "detach activity client, leaks")


@case("subscribe.handles-topic-export")
def _(ctx):
    """§5 subscribe: the handles topic's export carries `buffer, from,
    fromName` (the exporter) and `expiresInMs`, and no receiver."""
    s = ctx.conn()
    ok(s, "subscribe", topics=["handles"])
    a = ctx.conn()
    h = alloc(a, size=10)
    t = ok(a, "export", handle=h["handle"], ttlMs=5000)
    e = activity(s, "handles", "export", lambda e: e.get("buffer") == h["buffer"])
    act_base(e, "handles")
    eq((e.get("from"), e.get("fromName")), (a.session["clientId"], a.session["name"]), "export activity from, fromName")
    check(TYPES["number"](e.get("expiresInMs")) and 0 < e["expiresInMs"] <= 5000,
          f"export activity expiresInMs {e.get('expiresInMs')!r}")
    missing = [k for k in ("buffer", "from", "fromName", "expiresInMs") if k not in e]
    check(not missing, f"export activity lacks {missing}: {short(e)}")
    check("to" not in e and "toName" not in e, f"export activity names no receiver (there is none yet): {short(e)}")
    ok(a, "import", token=t["token"])


@case("subscribe.clients-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["clients"])
    n = uname("joiner")
    j = ctx.conn(name=n)
    e = activity(s, "clients", "connect", lambda e: e.get("client") == j.session["clientId"])
    act_base(e, "clients")
    eq((e.get("name"), e.get("principal")), (n, "anonymous"), "connect activity name, principal")
    j.close()
    e = activity(s, "clients", "disconnect", lambda e: e.get("client") == j.session["clientId"])
    eq(e.get("name"), n, "disconnect activity name")


@case("subscribe.violations-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["violations"])
    c = ctx.conn()
    h = alloc(c, "default", 4096)
    ok(c, "sync", handle=h["handle"], phase="end", access="read")
    e = activity(s, "violations", "end-without-start", lambda e: e.get("buffer") == h["buffer"])
    act_base(e, "violations")
    for k in ("seq", "client", "buffer", "op", "range", "mode", "message"):
        check(k in e, f"violation activity lacks {k}: {short(e)}")


@case("subscribe.status-snapshots")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["status"], intervalMs=100)
    a = event(s, "snapshot", timeout=3)
    b = event(s, "snapshot", timeout=3)
    no_id(a)
    check(TYPES["number"](a.get("timeMs")), "snapshot timeMs")
    shape(a.get("status"), STATUS, "snapshot.status")
    check(0 < b["timeMs"] - a["timeMs"] < 600, f"snapshots every 100 ms: {a['timeMs']} then {b['timeMs']}")


@case("subscribe.hugepages-topic")
def _(ctx):
    s = ctx.conn()
    ok(s, "subscribe", topics=["hugepages"])
    adm = ctx.admin()
    cur = {h["size"]: h for h in ok(adm, "status")["hugepages"]}[HUGE2M]
    try:
        ok(adm, "hugepages.set", size=HUGE2M, nr=cur["nr"] + 1)
        e = activity(s, "hugepages", "resize", lambda e: e.get("size") == HUGE2M)
        act_base(e, "hugepages")
        eq((e.get("requested"), e.get("reached"), e.get("client")),
           (cur["nr"] + 1, cur["nr"] + 1, adm.session["clientId"]), "resize requested, reached, client")
        check("overcommit" in e, "resize overcommit")
    finally:
        adm.request("hugepages.set", size=HUGE2M, nr=cur["nr"], overcommit=cur["overcommit"])


# --------------------------------------------------------------------------
# hugepages.set, reload (admin)
# --------------------------------------------------------------------------

@case("hugepages.set-needs-admin")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "hugepages.set", "EPERM", size=HUGE2M, nr=1)
    eq(details(e, "capability")["capability"], "admin", "details.capability")


@case("hugepages.set-admin")
def _(ctx):
    adm = ctx.admin()
    cur = {h["size"]: h for h in ok(adm, "status")["hugepages"]}[HUGE2M]
    try:
        r = ok(adm, "hugepages.set", size=HUGE2M, nr=cur["nr"] + 2, overcommit=cur["overcommit"])
        eq(sorted(r), ["overcommit", "reached", "requested", "size", "status"], "result members")
        eq((r["size"], r["requested"], r["reached"], r["overcommit"]),
           (HUGE2M, cur["nr"] + 2, cur["nr"] + 2, cur["overcommit"]), "size, requested, reached, overcommit")
        shape(r["status"], HUGEPAGES, "status")
        eq((r["status"]["nr"], r["status"]["total"], r["status"]["requested"]),
           (cur["nr"] + 2, cur["total"] + 2, cur["nr"] + 2), "status nr, total, requested")
        r = ok(adm, "hugepages.set", size=HUGE2M, nr=cur["nr"])
        eq(r["status"]["nr"], cur["nr"], "shrunk back")
        expect_err(adm, "hugepages.set", "EINVAL", size=HUGE1G, nr=2, overcommit=1)
        expect_err(adm, "hugepages.set", "ENOENT", size=4096, nr=1)
    finally:
        adm.request("hugepages.set", size=HUGE2M, nr=cur["nr"], overcommit=cur["overcommit"])


@case("reload.without-config")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "reload", "EPERM")
    adm = ctx.admin()
    before = ok(adm, "pools")
    r = ok(adm, "reload")
    eq(sorted(r), ["applied", "ignored", "source"], "reload result members")
    eq(r["source"], "(embedded default machine)", "source")
    eq(r["applied"], [], "applied is empty")
    shape(r["ignored"], ["str"], "ignored")
    eq([p["name"] for p in ok(adm, "pools")["pools"]], [p["name"] for p in before["pools"]], "nothing changes")


# --------------------------------------------------------------------------
# fault injection: inject.set, inject.clear, inject.list (admin), status.faults
# --------------------------------------------------------------------------

FAULT_POINTS = ["alloc", "hugepage", "iova", "bounce", "register", "token", "connection"]
ARMED = {"point": E(*FAULT_POINTS), "nth": "uint", "probability": "number", "times": ("uint", "nil"),
         "client": ("str", "nil"), "pool": ("str", "nil"), "seed": "uint", "source": E("op", "config"),
         "calls": "uint", "fired": "uint"}
FAULTS = {"armed": [ARMED], "injected": {p: "uint" for p in FAULT_POINTS}, "total": "uint"}


@case("inject.needs-admin")
def _(ctx):
    c = ctx.conn()
    for op, kw in (("inject.set", {"point": "alloc"}), ("inject.clear", {}), ("inject.list", {})):
        e = expect_err(c, op, "EPERM", **kw)
        eq(details(e, "capability")["capability"], "admin", f"{op}: details.capability")


@case("inject.alloc-nth-times-client")
def _(ctx):
    adm = ctx.admin()
    c = ctx.conn()
    name = c.session["name"]
    try:
        r = ok(adm, "inject.set", point="alloc", nth=2, times=1, client=name)
        shape(r, ARMED, "inject.set result")
        eq((r["nth"], r["times"], r["client"], r["probability"], r["calls"], r["fired"]), (2, 1, name, 100, 0, 0), "armed")
        alloc(adm)  # another client: not counted
        alloc(c)
        e = expect_err(c, "alloc", "ENOMEM", pool="default", size=4096)
        d = details(e, "pool", "requested", "injected")
        eq((d["pool"], d["requested"], d["injected"]), ("default", 4096, True), "ENOMEM details")
        alloc(c)  # times spent
        lst = ok(adm, "inject.list")
        shape(lst, dict(FAULTS, points=[{"point": E(*FAULT_POINTS), "meaning": "str"}]), "inject.list")
        eq([(a["point"], a["calls"], a["fired"], a["times"]) for a in lst["armed"]], [("alloc", 2, 1, 0)], "counts")
        st = ok(adm, "status")
        shape(st["faults"], FAULTS, "status.faults")
        check(st["faults"]["injected"]["alloc"] >= 1, "status.faults.injected.alloc")
        expect_err(adm, "inject.set", "EINVAL", point="nope")
        expect_err(adm, "inject.set", "EINVAL", point="alloc", nth=0)
        expect_err(adm, "inject.set", "ENOENT", point="alloc", pool="no-such-pool")
    finally:
        r = adm.request("inject.clear")
    eq(r["cleared"], ["alloc"], "inject.clear")
    eq(ok(adm, "inject.list")["armed"], [], "nothing armed")


# --------------------------------------------------------------------------
# error framing (§2, §3)
# --------------------------------------------------------------------------

@case("framing.truncated-msgpack")
def _(ctx):
    c = ctx.conn()
    body = packb({"id": 9, "op": "ping"})[:-2]
    e = raw_error(c, frame(body), "EPROTO", what="cut-short body")
    check(isinstance(e.get("message"), str), "message")
    still_open(c, "a cut-short body")
    raw_error(c, frame(packb({"id": 9, "op": "ping"}) + b"\xc0"), "EPROTO", what="trailing byte")
    still_open(c, "trailing bytes")
    # a str header claiming more bytes than the body has
    raw_error(c, frame(b"\x82\xa2id\x09\xa2op\xbfping"), "EPROTO", what="str longer than the body")
    # a map header claiming more entries than present
    raw_error(c, frame(b"\x83\xa2id\x09\xa2op\xa4ping"), "EPROTO", what="map claims 3 entries")
    raw_error(c, frame(b"\x82\xa2id\x09\xa2op\xdd\xff\xff\xff\xff"), "EPROTO", what="array32 claims 2^32-1")
    still_open(c, "several bad frames")


@case("framing.extension-types")
def _(ctx):
    c = ctx.conn()
    base = b"\x83\xa2id\x0a\xa2op\xa4ping\xa1x"
    for ext in (b"\xd4\x01\x00", b"\xd8\x01" + bytes(16), b"\xc7\x01\x05\x00", b"\xc8\x00\x01\x05\x00",
                b"\xc9\x00\x00\x00\x01\x05\x00"):
        e = raw_error(c, frame(base + b"\x91\x91" + ext), "EPROTO", what=f"nested ext 0x{ext[0]:02x}")
        off = len(base) + 2
        check(names_offset(e["message"], off), f"message should name offset {off}: {e['message']}")
    # a timestamp (ext -1) at top level too
    raw_error(c, frame(b"\xd6\xff\x00\x00\x00\x00"), "EPROTO", what="top-level timestamp ext")
    still_open(c, "extension types")


@case("framing.reserved-c1")
def _(ctx):
    c = ctx.conn()
    base = b"\x83\xa2id\x0b\xa2op\xa4ping\xa1x\x92\x01"
    e = raw_error(c, frame(base + b"\xc1"), "EPROTO", what="nested 0xc1")
    check(names_offset(e["message"], len(base)), f"message should name offset {len(base)}: {e['message']}")
    raw_error(c, frame(b"\xc1"), "EPROTO", what="0xc1 body")
    still_open(c, "0xc1")


@case("framing.non-string-keys")
def _(ctx):
    c = ctx.conn()
    raw_error(c, frame(b"\x83\xa2id\x0c\xa2op\xa4ping\x01\x02"), "EPROTO", what="integer key at top level")
    raw_error(c, frame(b"\x83\xa2id\x0c\xa2op\xa4ping\xa1x\x81\xc0\x01"), "EPROTO", what="nil key nested")
    raw_error(c, frame(b"\x83\xa2id\x0c\xa2op\xa4ping\xa1x\x81\xc4\x01k\x01"), "EPROTO", what="bin key nested")
    still_open(c, "non-string keys")


@case("framing.duplicate-keys")
def _(ctx):
    """§2: a key appearing twice in one map (by its text) makes the frame invalid."""
    c = ctx.conn()
    raw_error(c, frame(b"\x83\xa2id\x05\xa2op\xa4ping\xa2id\x06"), "EPROTO", what="id twice at top level")
    raw_error(c, frame(b"\x83\xa2id\x07\xa2op\xa4ping\xa1x\x82\xa1a\x01\xd9\x01a\x02"), "EPROTO", what="a fixstr and a str8 key of the same text, nested")
    still_open(c, "duplicate keys")


@case("framing.invalid-utf8")
def _(ctx):
    c = ctx.conn()
    raw_error(c, frame(b"\x83\xa2id\x0d\xa2op\xa4ping\xa1x\xa2\xc3\x28"), "EPROTO", what="invalid UTF-8 value")
    raw_error(c, frame(b"\x82\xa2id\x0d\xa2o\xff\xa4ping"), "EPROTO", what="invalid UTF-8 key")
    still_open(c, "invalid UTF-8")


@case("framing.nesting-depth")
def _(ctx):
    c = ctx.conn()
    base = b"\x83\xa2id\x0e\xa2op\xa4ping\xa1x"
    # the request map is level 1; x adds n arrays: total depth 1 + n
    deep = frame(base + b"\x91" * 70 + b"\x01")
    raw_error(c, deep, "EPROTO", what="71 levels")
    c.send_raw(frame(base + b"\x91" * 63 + b"\x01"))  # 64 levels: valid MessagePack, but 'x' is not a ping field
    r = c.read_response()
    eq((r.get("id"), r.get("error", {}).get("code")), (14, "EINVAL"), "64 levels is not EPROTO (unknown field x)")
    c.send_raw(frame(base + b"\x91" * 64 + b"\x01"))  # 65 levels
    r = c.read_response()
    eq((r.get("id"), r.get("error", {}).get("code")), (None, "EPROTO"), "65 levels is EPROTO")
    still_open(c, "deep nesting")


@case("framing.payload-bytes-are-data")
def _(ctx):
    """The structure check of §2 skips payloads: bytes inside a bin that look like 0xc1, an
    extension header or invalid UTF-8 are data."""
    c = ctx.conn()
    h = alloc(c, size=64)["handle"]
    tricky = b"\xc1\xd4\x01\x00\xc7\xff\x05\xc3\x28\xdf\xff\xff\xff\xff\x91"
    eq(ok(c, "write", handle=h, offset=0, data=tricky)["written"], len(tricky), "write of tricky bytes")
    eq(ok(c, "read", handle=h, offset=0, length=len(tricky))["data"], tricky, "read back")
    r = raw_call(c, frame(b"\x84\xa2id\x33\xa2op\xa4info\xa6handle\x00\xa4note\xa5\xe2\x82\xac\xc3\xa9"))
    eq((r.get("id"), r.get("error", {}).get("code")), (0x33, "EINVAL"), "valid multi-byte UTF-8 is fine (extra field)")


@case("framing.id-kept-for-bad-requests")
def _(ctx):
    """§3: a request with a valid id always gets its answer with that id, errors included."""
    c = ctx.conn()
    for body, what in ((b"\x81\xa2id\x08", "missing op"), (b"\x82\xa2id\x08\xa2op\x05", "op not a string"),
                       (b"\x82\xa2id\x08\xa2op\xa0", "empty op")):
        r = raw_call(c, frame(body))
        eq((r.get("id"), r.get("error", {}).get("code")), (8, "EINVAL"), what)
        check("op" in r["error"]["message"], f"{what}: message should name op: {r['error']['message']}")


@case("framing.body-of-max-frame-bytes")
def _(ctx):
    """§2: bodies of at most maxFrameBytes are accepted (here: refused only for data over maxDataBytes)."""
    c = ctx.conn()
    limit = c.session["limits"]["maxFrameBytes"]
    h = alloc(c, size=16)["handle"]
    head = packb({"id": 77, "op": "write", "handle": h, "offset": 0})
    # {id, op, handle, offset, data: bin32 of n}: map header grows from 0x84 to 0x85
    n = limit - (len(head) - 1 + 1 + 5 + 5)
    body = b"\x85" + head[1:] + b"\xa4data\xc6" + struct.pack(">I", n) + bytes(n)
    eq(len(body), limit, "test body length")
    r = raw_call(c, frame(body))
    eq(r.get("id"), 77, "a body of exactly maxFrameBytes is read")
    eq(r.get("error", {}).get("code"), "EINVAL", "data over maxDataBytes")
    still_open(c, "a body of maxFrameBytes")


@case("framing.not-a-map")
def _(ctx):
    c = ctx.conn()
    for body in (packb([1, 2]), packb("ping"), packb(5), packb(None)):
        raw_error(c, frame(body), "EPROTO", what=f"body {body.hex()}")
    still_open(c, "non-map bodies")


@case("framing.zero-length")
def _(ctx):
    c = ctx.conn()
    raw_error(c, b"\0\0\0\0", "EPROTO", what="zero-length body")
    still_open(c, "a zero-length frame")
    d = ctx.raw()
    raw_error(d, b"\0\0\0\0", "EPROTO", what="zero-length body before hello")
    d.hello()


@case("framing.missing-or-bad-id")
def _(ctx):
    c = ctx.conn()
    e = raw_error(c, encode_frame({"op": "ping"}), "EINVAL", what="missing id")
    check("id" in e["message"], f"message should name id: {e['message']}")
    for bad in (-1, "7", 1.5, 2**53, None, [1]):
        e = raw_error(c, encode_frame({"id": bad, "op": "ping"}), "EINVAL", what=f"id {bad!r}")
        check(re.search(r"\bid\b", e["message"]), f"message should name id: {e['message']}")
    r = raw_call(c, encode_frame({"id": 2**53 - 1, "op": "ping"}))
    eq(r.get("id"), 2**53 - 1, "id 2^53-1 is echoed")
    check("result" in r, f"id 2^53-1: {short(r)}")
    still_open(c, "bad ids")


@case("framing.any-integer-encoding")
def _(ctx):
    c = ctx.raw()
    # hello with version as uint 64 and id as int 64
    body = b"\x83\xa2id\xd3" + struct.pack(">q", 21) + b"\xa2op\xa5hello\xa7version\xcf" + struct.pack(">Q", 1)
    r = raw_call(c, frame(body))
    eq(r.get("id"), 21, "id sent as int 64")
    check("result" in r, f"hello with uint 64 version: {short(r)}")
    r = raw_call(c, frame(b"\x82\xa2id\xcd\x01\x00\xa2op\xa4ping"))
    eq(r.get("id"), 256, "id as uint 16")
    r = raw_call(c, frame(b"\x82\xa2id\xd0\x05\xa2op\xa4ping"))
    eq(r.get("id"), 5, "id 5 as int 8")
    check("result" in r, f"id as int 8: {short(r)}")
    r = raw_call(c, frame(b"\x82\xa2id\x06\xa2op\xd9\x04ping"))
    eq(r.get("id"), 6, "op as str 8")
    check("result" in r, f"str 8: {short(r)}")
    r = raw_call(c, frame(b"\x82\xd9\x02id\x07\xda\x00\x02op\xa4ping"))
    eq(r.get("id"), 7, "keys as str 8 and str 16")
    check("result" in r, f"str 8/16 keys: {short(r)}")
    r = raw_call(c, frame(b"\x82\xa2id\xcf" + b"\xff" * 8 + b"\xa2op\xa4ping"))
    eq((r.get("id"), r.get("error", {}).get("code")), (None, "EINVAL"), "id 2^64-1")


@case("framing.oversized-prefix")
def _(ctx):
    c = ctx.conn()
    limit = c.session["limits"]["maxFrameBytes"]
    c.send_raw(struct.pack(">I", limit + 1))
    r = c.read_response()
    eq(r.get("id"), None, "E2BIG id")
    eq(r.get("error", {}).get("code"), "E2BIG", "oversized prefix")
    d = r["error"].get("details") or {}
    eq((d.get("length"), d.get("limit")), (limit + 1, limit), "E2BIG details {length, limit}")
    c.sock.settimeout(3)
    try:
        extra = c.sock.recv(1)
    except (ConnectionResetError, socket.timeout) as e:
        extra = e
    eq(extra, b"", "the daemon closes the connection after E2BIG")


@case("framing.oversized-prefix-before-hello")
def _(ctx):
    c = ctx.raw()
    c.send_raw(b"\xff\xff\xff\xff")
    r = c.read_response()
    eq((r.get("id"), r.get("error", {}).get("code")), (None, "E2BIG"), "E2BIG before hello")


@case("framing.pipelining-in-order")
def _(ctx):
    c = ctx.conn()
    h = alloc(c, size=10)["handle"]
    data = b""
    expect = []
    for i in range(40):
        rid = 1000 + i
        k = i % 5
        if k == 0:
            data += encode_frame({"id": rid, "op": "ping"}); expect.append((rid, None))
        elif k == 1:
            data += encode_frame({"id": rid, "op": "info", "handle": 77}); expect.append((rid, "EBADF"))
        elif k == 2:
            data += encode_frame({"id": rid, "op": "no.such.op"}); expect.append((rid, "EINVAL"))
        elif k == 3:
            data += frame(b"\xc1"); expect.append((None, "EPROTO"))
        else:
            data += encode_frame({"id": rid, "op": "write", "handle": h, "offset": 0, "data": bytes([i])})
            expect.append((rid, None))
    c.send_raw(data)
    got = []
    for _ in expect:
        r = c.read_response()
        got.append((r.get("id"), r.get("error", {}).get("code") if "error" in r else None))
    eq(got, expect, "responses in request order")
    eq(ok(c, "read", handle=h, offset=0, length=1)["data"], bytes([39]), "writes applied in order")


@case("framing.unknown-op-and-extra-fields")
def _(ctx):
    c = ctx.conn()
    e = expect_err(c, "frobnicate", "EINVAL")
    check("frobnicate" in e["message"] or "op" in e["message"], f"names the op: {e['message']}")
    h = alloc(c, size=10)["handle"]
    e = expect_err(c, "info", "EINVAL", handle=h, verbose=True)
    check("verbose" in e["message"], f"message names the extra field: {e['message']}")
    expect_err(c, "info", "EINVAL", handle="0")
    expect_err(c, "info", "EINVAL", handle=-1)
    expect_err(c, "info", "EINVAL", {})
    r = c.call("info", handle=h)
    check("result" in r, "still fine")


# --------------------------------------------------------------------------
# hello deadline (§2): checked last, the connection is opened at start
# --------------------------------------------------------------------------

HELLO_TIMEOUT_CONN: list = []


@case("framing.hello-deadline")
def _(ctx):
    if not HELLO_TIMEOUT_CONN:
        fail("connection for the hello deadline was not opened")
    sock, t0 = HELLO_TIMEOUT_CONN[0]
    left = 10.0 + 4.0 - (time.monotonic() - t0)
    sock.settimeout(max(left, 0.5))
    try:
        body = read_frame_body(sock)
    except socket.timeout:
        fail("no ETIMEDOUT frame within helloTimeoutMs (10 s) + 4 s")
    except ConnectionClosed:
        fail("closed without an ETIMEDOUT frame")
    elapsed = time.monotonic() - t0
    r = unpackb(body)
    eq((r.get("id"), r.get("error", {}).get("code")), (None, "ETIMEDOUT"), "hello deadline frame")
    check(elapsed >= 9.5, f"ETIMEDOUT after {elapsed:.1f} s, before helloTimeoutMs")
    sock.settimeout(3)
    eq(sock.recv(1), b"", "closed after ETIMEDOUT")
    sock.close()


@case("shutdown.sigterm")
def _(ctx):
    """Opt-in (--allow-shutdown): stops the daemon. §8 shutdown event, §4 cookie removed at exit."""
    c = ctx.conn()
    pid = ok(c, "status")["pid"]
    os.kill(pid, 15)
    ev = event(c, "shutdown", timeout=5)
    no_id(ev)
    eq(ev, {"event": "shutdown", "reason": "SIGTERM"}, "shutdown event")
    c.sock.settimeout(8)
    try:
        while True:
            c.read_message()
    except ConnectionClosed:
        pass
    except ConnectionResetError:
        pass
    c.close()  # the daemon's exit waits for its peers' close, up to shutdownTimeoutMs
    deadline = time.monotonic() + 6
    while os.path.exists(cookie_path(SOCK)) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(not os.path.exists(cookie_path(SOCK)), "the cookie file is removed at exit")


# --------------------------------------------------------------------------

def main(argv):
    global SOCK
    if len(argv) < 2:
        print("usage: cases.py SOCKET_PATH [--allow-shutdown] [CASE-SUBSTRING ...]", file=sys.stderr)
        return 2
    SOCK = argv[1]
    allow_shutdown = "--allow-shutdown" in argv
    filters = [a for a in argv[2:] if a != "--allow-shutdown"]
    selected = [(n, f) for n, f in CASES if (not filters or any(s in n for s in filters))
                and (allow_shutdown or n != "shutdown.sigterm")]
    if any(n == "framing.hello-deadline" for n, _ in selected):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(SOCK)
        HELLO_TIMEOUT_CONN.append((s, time.monotonic()))
    passed = failed = 0
    names = set()
    for name, fn in selected:
        assert name not in names, name
        names.add(name)
        ctx = Ctx()
        t0 = time.monotonic()
        try:
            fn(ctx)
        except Fail as e:
            failed += 1
            print(f"not ok {name}: {str(e).replace(chr(10), ' / ')}", flush=True)
        except BufferdError as e:
            failed += 1
            print(f"not ok {name}: unexpected {e.code}: {e.message}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            print(f"not ok {name}: {type(e).__name__}: {e} (line {tb.lineno})", flush=True)
        else:
            passed += 1
            print(f"ok {name}", flush=True)
        finally:
            ctx.close()
        if os.environ.get("CONFORMANCE_TIMES"):
            print(f"#   {name} {time.monotonic() - t0:.2f}s", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
