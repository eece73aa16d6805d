"""pika's asyncio adapter (callback style, like SelectConnection): open, declare, confirm
mode, publish, consume, ack and a clean close, all driven by broker callbacks; and closing a
channel that holds an unacked delivery of a queue deleted since."""

import asyncio

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from compat import PORT, check, finish, report, unique

PARAMS = pika.ConnectionParameters(
    host="127.0.0.1", port=PORT, credentials=pika.PlainCredentials("guest", "guest")
)
COUNT = 50


class Flow:
    """One connection walking declare -> confirm.select -> publish -> consume -> ack -> close."""

    def __init__(self, loop):
        self.done = loop.create_future()
        self.queue = unique("pika.async")
        self.acked = set()
        self.received = []
        self.connection = AsyncioConnection(
            PARAMS,
            on_open_callback=self.on_open,
            on_open_error_callback=lambda _c, err: self.fail(f"open failed: {err}"),
            on_close_callback=self.on_closed,
            custom_ioloop=loop,
        )

    def fail(self, why):
        if not self.done.done():
            self.done.set_exception(AssertionError(why))

    def on_open(self, connection):
        connection.channel(on_open_callback=self.on_channel)

    def on_channel(self, channel):
        self.channel = channel
        channel.add_on_close_callback(lambda _ch, reason: self.on_channel_closed(reason))
        channel.queue_declare(self.queue, auto_delete=True, callback=self.on_declared)

    def on_channel_closed(self, reason):
        if not self.done.done() and len(self.received) < COUNT:
            self.fail(f"channel closed early: {reason}")

    def on_declared(self, frame):
        check(frame.method.queue == self.queue, f"declared {frame.method.queue}")
        self.channel.confirm_delivery(self.on_confirm, callback=self.on_confirm_mode)

    def on_confirm_mode(self, _frame):
        for i in range(COUNT):
            self.channel.basic_publish("", self.queue, f"a{i}".encode())

    def on_confirm(self, frame):
        method = frame.method
        if method.NAME != "Basic.Ack":
            self.fail(f"publish answered with {method.NAME}")
            return
        tags = range(max(self.acked, default=0) + 1, method.delivery_tag + 1)
        self.acked.update(tags if method.multiple else [method.delivery_tag])
        if len(self.acked) == COUNT:
            self.channel.basic_qos(prefetch_count=10, callback=self.on_qos)

    def on_qos(self, _frame):
        self.channel.basic_consume(self.queue, self.on_message)

    def on_message(self, channel, method, _props, body):
        self.received.append(body)
        channel.basic_ack(method.delivery_tag)
        if len(self.received) == COUNT:
            self.connection.close()

    def on_closed(self, _connection, reason):
        if self.done.done():
            return
        if len(self.received) == COUNT:
            self.done.set_result(reason)
        else:
            self.fail(f"connection closed after {len(self.received)} messages: {reason}")


class CloseAfterDelete:
    """Gets a message without acking it, deletes its queue from a second channel, then closes
    the first channel: RabbitMQ answers close-ok and the connection stays open."""

    def __init__(self, loop):
        self.done = loop.create_future()
        self.queue = unique("pika.async.gone")
        self.connection = AsyncioConnection(
            PARAMS,
            on_open_callback=lambda c: c.channel(on_open_callback=self.on_channel),
            on_open_error_callback=lambda _c, err: self.fail(f"open failed: {err}"),
            on_close_callback=lambda _c, reason: self.fail(f"connection closed: {reason}"),
            custom_ioloop=loop,
        )

    def fail(self, why):
        if not self.done.done():
            self.done.set_exception(AssertionError(why))

    def on_channel(self, channel):
        self.channel = channel
        channel.add_on_close_callback(self.on_channel_closed)
        channel.queue_declare(self.queue, callback=self.on_declared)

    def on_declared(self, _frame):
        self.channel.basic_publish("", self.queue, b"held")
        self.channel.basic_get(self.queue, self.on_got, auto_ack=False)

    def on_got(self, _channel, method, _props, _body):
        check(method is not None, "nothing to get")
        self.connection.channel(on_open_callback=self.on_other)

    def on_other(self, other):
        other.queue_delete(self.queue, callback=lambda _f: self.channel.close())

    def on_channel_closed(self, _channel, reason):
        # The client's own close, answered close-ok: the connection must still be open.
        if not self.connection.is_open:
            self.fail(f"the connection closed with the channel: {reason}")
            return
        self.connection.channel(on_open_callback=self.on_reopened)

    def on_reopened(self, _channel):
        if not self.done.done():
            self.done.set_result(None)


async def close_after_delete():
    flow = CloseAfterDelete(asyncio.get_running_loop())
    try:
        await asyncio.wait_for(flow.done, timeout=20)
        report("close-deleted-queue", True, "close-ok; a new channel opens on the same connection")
    except Exception as err:  # noqa: BLE001
        report("close-deleted-queue", False, f"{type(err).__name__}: {err}")
    finally:
        if flow.connection.is_open:
            flow.connection.close()


async def main():
    await close_after_delete()
    flow = Flow(asyncio.get_running_loop())
    try:
        await asyncio.wait_for(flow.done, timeout=20)
        expected = [f"a{i}".encode() for i in range(COUNT)]
        check(flow.received == expected, f"received {flow.received[:5]}...")
        check(sorted(flow.acked) == list(range(1, COUNT + 1)), f"confirms {sorted(flow.acked)}")
        report("confirm-consume", True, f"{COUNT} confirmed, consumed in order, acked, closed")
    except Exception as err:  # noqa: BLE001
        report("confirm-consume", False, f"{type(err).__name__}: {err}")
        if flow.connection.is_open:
            flow.connection.close()


asyncio.run(main())
finish()
