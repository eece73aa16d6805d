"""A raw-socket AMQP 0-9-1 client for what pika hides or refuses to send: malformed frames,
wrong states, and the exact field types and key order of header tables.

Method frames are encoded and decoded with pika's spec classes; field tables are decoded here
with their type tags, e.g. `{"count": ("l", 1)}`, so `I` vs `l` or `S` vs `x` differences show.

Invariant: every read has a deadline; `until_close` returns what the broker did (a close
method with code and text, EOF, or silence), never blocks for longer than its timeout.
"""

import socket
import struct
import time

from pika import frame, spec

FRAME_END = b"\xce"


def method_frame(channel, method):
    return frame.Method(channel, method).marshal()


def raw_frame(kind, channel, payload, end=FRAME_END):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + end


class Raw:
    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.timeout = timeout

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def read_some(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def next_frame(self, timeout=None):
        """The next decoded frame, or raises EOFError / TimeoutError."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            used, decoded = frame.decode_frame(self.buffer)
            if decoded is not None:
                self.buffer = self.buffer[used:]
                return decoded
            try:
                self.read_some(deadline)
            except socket.timeout as silent:
                raise TimeoutError from silent

    def expect(self, method_class, timeout=None):
        while True:
            got = self.next_frame(timeout)
            if isinstance(got, frame.Method) and isinstance(got.method, method_class):
                return got
            if isinstance(got, frame.Method) and isinstance(got.method, spec.Connection.Close):
                raise ConnectionError(f"{got.method.reply_code} {got.method.reply_text}")

    def handshake(self, password="guest", vhost="/"):
        self.send(b"AMQP\x00\x00\x09\x01")
        self.expect(spec.Connection.Start)
        capabilities = {"authentication_failure_close": True, "consumer_cancel_notify": True,
                        "basic.nack": True, "publisher_confirms": True}
        self.send(method_frame(0, spec.Connection.StartOk(
            client_properties={"capabilities": capabilities}, mechanism="PLAIN",
            response=f"\0guest\0{password}", locale="en_US")))
        tune = self.expect(spec.Connection.Tune).method
        self.send(method_frame(0, spec.Connection.TuneOk(tune.channel_max, tune.frame_max, 0)))
        self.send(method_frame(0, spec.Connection.Open(virtual_host=vhost)))
        self.expect(spec.Connection.OpenOk)
        return tune

    def open_channel(self, channel=1):
        self.send(method_frame(channel, spec.Channel.Open()))
        self.expect(spec.Channel.OpenOk)

    def until_close(self, timeout=3.0):
        """What the broker does next: `connection.close <code> <text> <class>/<method>`,
        `channel.close ...`, `eof` or `silence`; other frames are skipped."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                got = self.next_frame(max(0.01, deadline - time.monotonic()))
                if isinstance(got, frame.Method):
                    m = got.method
                    if isinstance(m, (spec.Connection.Close, spec.Channel.Close)):
                        level = "connection" if got.channel_number == 0 else "channel"
                        return f"{level}.close {m.reply_code} {m.reply_text} {m.class_id}/{m.method_id}"
        except EOFError:
            return "eof"
        except TimeoutError:
            return "silence"
        except ConnectionResetError:
            return "eof"

    def get_raw(self, channel, queue):
        """basic.get with no-ack; returns (get-ok method, raw property bytes, body) or None."""
        self.send(method_frame(channel, spec.Basic.Get(queue=queue, no_ack=True)))
        while True:
            got = self.next_frame()
            if isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.GetEmpty):
                return None
            if isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.GetOk):
                break
        return got.method, self.read_content()

    def read_content(self):
        """Reads the header and body frames that follow a get-ok or deliver, undecoded."""
        deadline = time.monotonic() + self.timeout
        while len(self.buffer) < 7:
            self.read_some(deadline)
        _, _, size = struct.unpack(">BHI", self.buffer[:7])
        while len(self.buffer) < size + 8:
            self.read_some(deadline)
        payload = self.buffer[7:7 + size]
        self.buffer = self.buffer[size + 8:]
        body_size = struct.unpack(">Q", payload[4:12])[0]
        body = b""
        while len(body) < body_size:
            got = self.next_frame()
            body += got.fragment
        return payload[12:], body


def _short(data, at):
    size = data[at]
    return data[at + 1:at + 1 + size].decode(), at + 1 + size


def _long(data, at):
    size = struct.unpack_from(">I", data, at)[0]
    return data[at + 4:at + 4 + size], at + 4 + size


FIXED = {b"t": ">B", b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"I": ">i", b"i": ">I",
         b"l": ">q", b"L": ">q", b"f": ">f", b"d": ">d", b"T": ">Q"}


def typed_value(data, at):
    kind = data[at:at + 1]
    at += 1
    if kind in FIXED:
        fmt = FIXED[kind]
        value = struct.unpack_from(fmt, data, at)[0]
        return (kind.decode(), value), at + struct.calcsize(fmt)
    if kind in (b"S", b"x"):
        value, at = _long(data, at)
        return (kind.decode(), value.decode(errors="replace")), at
    if kind == b"F":
        size = struct.unpack_from(">I", data, at)[0]
        return ("F", typed_table(data[at + 4:at + 4 + size])), at + 4 + size
    if kind == b"A":
        size = struct.unpack_from(">I", data, at)[0]
        end, items, at = at + 4 + size, [], at + 4
        while at < end:
            item, at = typed_value(data, at)
            items.append(item)
        return ("A", items), end
    if kind == b"D":
        return ("D", struct.unpack_from(">Bi", data, at)), at + 5
    if kind == b"V":
        return ("V", None), at
    raise ValueError(f"unknown field type {kind!r}")


def typed_table(data):
    """Decodes a table body (without its length) into an ordered list of (key, (type, value))."""
    out, at = [], 0
    while at < len(data):
        key, at = _short(data, at)
        value, at = typed_value(data, at)
        out.append((key, value))
    return out


def property_headers(raw_properties):
    """The `headers` table of raw basic properties, typed and in wire order (None if absent)."""
    flags = struct.unpack_from(">H", raw_properties, 0)[0]
    at = 2
    for bit in (15, 14):  # content-type, content-encoding come first
        if flags & (1 << bit):
            _, at = _short(raw_properties, at)
    if not flags & (1 << 13):
        return None
    size = struct.unpack_from(">I", raw_properties, at)[0]
    return typed_table(raw_properties[at + 4:at + 4 + size])
