"""aio-pika with robust connections: RPC over a server-named reply queue and over direct
reply-to, a robust channel restoring itself after a channel error, and a robust connection
reconnecting (and re-declaring its queue and consumer) after its TCP link is cut by a proxy."""

import asyncio
import time
import uuid

import aio_pika

from compat import PORT, check, finish, report, unique

URL = f"amqp://guest:guest@127.0.0.1:{PORT}/"


async def run(name, coroutine_function, timeout=20):
    started = time.monotonic()
    try:
        detail = await asyncio.wait_for(coroutine_function(), timeout)
        report(name, True, f"{detail} ({time.monotonic() - started:.2f} s)")
    except Exception as err:  # noqa: BLE001
        report(name, False, f"{type(err).__name__}: {err}")


async def serve_rpc(channel, queue_name):
    """An RPC server: replies to each request on its reply_to, doubling the number."""
    queue = await channel.declare_queue(queue_name, auto_delete=True)

    async def on_request(message):
        async with message.process():
            reply = aio_pika.Message(
                str(int(message.body) * 2).encode(), correlation_id=message.correlation_id
            )
            await channel.default_exchange.publish(reply, routing_key=message.reply_to)

    await queue.consume(on_request)


async def call(channel, queue_name, reply_to, replies, number):
    correlation_id = uuid.uuid4().hex
    answer = asyncio.get_running_loop().create_future()
    replies[correlation_id] = answer
    request = aio_pika.Message(str(number).encode(), correlation_id=correlation_id,
                               reply_to=reply_to)
    await channel.default_exchange.publish(request, routing_key=queue_name)
    return int((await asyncio.wait_for(answer, 5)).body)


async def rpc_with(direct_reply_to):
    connection = await aio_pika.connect_robust(URL, timeout=5)
    async with connection:
        server_channel = await connection.channel()
        rpc_queue = unique("aio.rpc")
        await serve_rpc(server_channel, rpc_queue)
        channel = await connection.channel()
        replies = {}

        async def on_reply(message):
            future = replies.pop(message.correlation_id, None)
            if future is not None and not future.done():
                future.set_result(message)

        if direct_reply_to:
            reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await reply_queue.consume(on_reply, no_ack=True)
            reply_to = "amq.rabbitmq.reply-to"
        else:
            reply_queue = await channel.declare_queue("", exclusive=True)
            await reply_queue.consume(on_reply, no_ack=True)
            reply_to = reply_queue.name
        results = [await call(channel, rpc_queue, reply_to, replies, n) for n in range(1, 6)]
        check(results == [2, 4, 6, 8, 10], f"answers {results}")
        return f"5 calls answered via {'direct reply-to' if direct_reply_to else 'an exclusive queue'}"


async def robust_channel():
    connection = await aio_pika.connect_robust(URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique("aio.robust"), auto_delete=True)
        got = asyncio.Queue()
        await queue.consume(lambda message: got.put_nowait(message.body), no_ack=True)
        try:
            await channel.declare_queue(unique("aio.missing"), passive=True)
            raise AssertionError("passive declare of a missing queue succeeded")
        except aio_pika.exceptions.ChannelNotFoundEntity:
            pass
        deadline = time.monotonic() + 5
        while channel.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let the restore finish re-consuming
        await channel.default_exchange.publish(aio_pika.Message(b"after"), queue.name)
        body = await asyncio.wait_for(got.get(), 5)
        check(body == b"after", f"got {body!r}")
        return "404 closed the channel; restored channel still consumes"


class CuttingProxy:
    """A localhost TCP proxy to the broker whose live links can be cut at once."""

    def __init__(self):
        self.writers = []

    async def start(self):
        self.server = await asyncio.start_server(self.on_client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def on_client(self, client_reader, client_writer):
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", PORT)
        self.writers += [client_writer, broker_writer]

        async def pump(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_reader, broker_writer), pump(broker_reader, client_writer))

    def cut(self):
        for writer in self.writers:
            writer.transport.abort()
        self.writers = []


async def robust_reconnect():
    proxy = CuttingProxy()
    port = await proxy.start()
    connection = await aio_pika.connect_robust(
        f"amqp://guest:guest@127.0.0.1:{port}/", timeout=5, reconnect_interval=0.5
    )
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique("aio.reconnect"), auto_delete=True)
        got = asyncio.Queue()
        await queue.consume(lambda message: got.put_nowait(message.body), no_ack=True)
        await channel.default_exchange.publish(aio_pika.Message(b"before"), queue.name)
        check(await asyncio.wait_for(got.get(), 5) == b"before", "no message before the cut")
        proxy.cut()
        await asyncio.wait_for(reconnected.wait(), 10)
        await asyncio.sleep(0.3)  # the restore re-declares the queue, then re-consumes
        await channel.default_exchange.publish(aio_pika.Message(b"after"), queue.name)
        body = await asyncio.wait_for(got.get(), 5)
        check(body == b"after", f"after reconnect got {body!r}")
    proxy.server.close()
    return "link cut, reconnected, queue and consumer re-declared"


async def main():
    await run("rpc-reply-queue", lambda: rpc_with(direct_reply_to=False))
    await run("rpc-direct-reply-to", lambda: rpc_with(direct_reply_to=True))
    await run("robust-channel", robust_channel)
    await run("robust-reconnect", robust_reconnect)


asyncio.run(main())
finish()
