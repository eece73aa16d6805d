"""Frames and connection-level errors over raw sockets: protocol header negotiation, frame
size, frame end, unknown frame types, wrong channel states, unexpected content frames,
unknown methods, bad vhost and bad credentials."""

import struct

from pika import spec

from common import behaviour
from raw import Raw, method_frame, raw_frame


def opened(ctx, channel=True):
    raw = Raw(ctx.port)
    raw.handshake()
    if channel:
        raw.open_channel()
    return raw


# Bad input on an open channel 1: (behaviour, the frames to send); observed is the close.
BAD_INPUT = [
    ("frame-too-large",
     lambda: [struct.pack(">BHI", 1, 1, 10_000_000)]),
    ("frame-bad-end-octet",
     lambda: [raw_frame(1, 1, method_frame(1, spec.Basic.Qos(prefetch_count=1))[7:-1], b"\x00")]),
    ("frame-unknown-type",
     lambda: [raw_frame(9, 1, b"abc")]),
    ("channel-open-twice",
     lambda: [method_frame(1, spec.Channel.Open())]),
    ("body-without-publish",
     lambda: [raw_frame(3, 1, b"stray body")]),
    ("method-instead-of-content-header",
     lambda: [method_frame(1, spec.Basic.Publish(exchange="", routing_key="x")),
             method_frame(1, spec.Basic.Qos(prefetch_count=1))]),
    ("heartbeat-on-channel",
     lambda: [raw_frame(8, 1, b"")]),
    ("unknown-method",
     lambda: [raw_frame(1, 1, struct.pack(">HH", 60, 999))]),
    ("truncated-method-arguments",
     lambda: [raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00")]),
    ("content-header-body-size-exceeded",
     lambda: [method_frame(1, spec.Basic.Publish(exchange="", routing_key="x")),
             raw_frame(2, 1, struct.pack(">HHQH", 60, 0, 3, 0)), raw_frame(3, 1, b"12345")]),
]


def send_then_close(ctx, frames):
    raw = opened(ctx)
    for data in frames():
        raw.send(data)
    return raw.until_close()


for case, frames in BAD_INPUT:
    behaviour("frames", case)(lambda ctx, f=frames: send_then_close(ctx, f))


@behaviour("frames", "protocol-header-wrong-version")
def _(ctx):
    raw = Raw(ctx.port)
    raw.send(b"AMQP\x00\x00\x08\x00")
    reply = raw.sock.recv(8)
    return [reply.hex(), raw.until_close(1.0)]


@behaviour("frames", "protocol-header-garbage")
def _(ctx):
    raw = Raw(ctx.port)
    raw.send(b"GET / HTTP/1.1\r\n\r\n")
    return [raw.sock.recv(8).hex(), raw.until_close(1.0)]


@behaviour("frames", "method-on-unopened-channel")
def _(ctx):
    raw = opened(ctx, channel=False)
    raw.send(method_frame(3, spec.Basic.Qos(prefetch_count=1)))
    return raw.until_close()


@behaviour("frames", "connection-bad-vhost")
def _(ctx):
    raw = Raw(ctx.port)
    try:
        raw.handshake(vhost="nope-vhost")
        return "opened"
    except ConnectionError as refused:
        return f"connection.close {refused}"


@behaviour("frames", "connection-bad-password")
def _(ctx):
    raw = Raw(ctx.port)
    try:
        raw.handshake(password="wrong")
        return "opened"
    except ConnectionError as refused:
        return f"connection.close {refused}"
    except (EOFError, TimeoutError) as ended:
        return type(ended).__name__


@behaviour("frames", "channel-close-then-method-ignored")
def _(ctx):
    raw = opened(ctx)
    raw.send(method_frame(1, spec.Queue.Declare(queue=ctx.name("nope"), passive=True)))
    first = raw.until_close()
    raw.send(method_frame(1, spec.Basic.Qos(prefetch_count=1)))
    raw.send(method_frame(1, spec.Channel.CloseOk()))
    raw.send(method_frame(1, spec.Channel.Open()))
    try:
        raw.expect(spec.Channel.OpenOk)
        reopened = "reopened"
    except (ConnectionError, TimeoutError, EOFError) as error:
        reopened = f"{type(error).__name__} {error}"
    return [first, reopened]
