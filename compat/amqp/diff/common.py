"""Shared pieces of the differential suite: the behaviour registry, the per-behaviour context
(port, run prefix, pika connections), `attempt` (how a call ended: value or the broker's close)
and the normalisation of generated names.

Invariant: an observation is plain text; everything broker-generated (queue names, consumer
tags, reply-to tokens) or run-specific (the prefix) is replaced before comparison.
"""

import re
import time

import pika
import pika.frame
import pika.exceptions as px

BEHAVIOURS = []  # (area, name, function)


def behaviour(area, name):
    def register(function):
        BEHAVIOURS.append((area, name, function))
        return function

    return register


class Ctx:
    """What a behaviour gets: the broker's port, a fresh name prefix and connection helpers."""

    def __init__(self, port, prefix):
        self.port = port
        self.prefix = prefix
        self.opened = []

    def name(self, suffix):
        return f"{self.prefix}{suffix}"

    def params(self, **overrides):
        settings = dict(host="127.0.0.1", port=self.port, heartbeat=0,
                        credentials=pika.PlainCredentials("guest", "guest"))
        settings.update(overrides)
        return pika.ConnectionParameters(**settings)

    def connect(self, **overrides):
        connection = pika.BlockingConnection(self.params(**overrides))
        self.opened.append(connection)
        return connection

    def channel(self):
        return self.connect().channel()

    def close_all(self):
        for connection in self.opened:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:  # noqa: BLE001 - teardown must not mask the observation
                pass
        self.opened.clear()


def attempt(action):
    """Runs `action` and describes how it ended: its value, or the close the broker sent."""
    try:
        value = action()
        if isinstance(value, pika.frame.Method):
            value = value.method.NAME
        return "ok" if value is None else f"ok {value}"
    except px.ChannelClosedByBroker as closed:
        return f"channel-closed {closed.reply_code} {closed.reply_text}"
    except px.ConnectionClosedByBroker as closed:
        return f"connection-closed {closed.reply_code} {closed.reply_text}"
    except px.UnroutableError as error:
        returned = [(m.method.reply_code, m.method.reply_text) for m in error.messages]
        return f"returned {returned}"
    except px.NackError as error:
        return f"nacked {len(error.messages)}"
    except (px.StreamLostError, px.AMQPConnectionError) as error:
        return f"connection-lost {type(error).__name__}"


def declare_ok(ch, queue, **kwargs):
    """Declares a queue and returns (message_count, consumer_count)."""
    ok = ch.queue_declare(queue, **kwargs).method
    return ok.message_count, ok.consumer_count


def get_bodies(ch, queue, limit=20, ack=True):
    """Drains a queue with basic.get; returns bodies (and redelivered flags)."""
    out = []
    for _ in range(limit):
        method, _props, body = ch.basic_get(queue, auto_ack=ack)
        if method is None:
            break
        out.append(body.decode() + ("*" if method.redelivered else ""))
    return out


def settle(seconds=0.3):
    time.sleep(seconds)


def pump(connection, seconds):
    """Handles a connection's incoming frames for `seconds` (pika's process_data_events
    returns as soon as it handled anything, so it is called until the deadline)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        connection.process_data_events(left)


GENERATED = [
    (re.compile(r"amq\.gen-[A-Za-z0-9_\-]+"), "amq.gen-*"),
    (re.compile(r"amq\.ctag-[A-Za-z0-9_\-]+"), "amq.ctag-*"),
    (re.compile(r"amq\.rabbitmq\.reply-to\.[A-Za-z0-9_.=+/\-]+"), "amq.rabbitmq.reply-to.*"),
]


def normalise(text, prefix):
    text = text.replace(prefix, "P-")
    for pattern, replacement in GENERATED:
        text = pattern.sub(replacement, text)
    return text
