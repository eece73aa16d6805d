"""pika BlockingConnection: declare/bind/publish/consume/ack, nack with requeue, publisher
confirms (mandatory returns, a missing exchange), server-named exclusive queues, a 15 MiB
message, connection.update-secret, and closing a channel that holds a deleted queue's
delivery."""

import time

import pika

from compat import PORT, BrokerMemory, check, finish, scenario, unique

PARAMS = pika.ConnectionParameters(
    host="127.0.0.1",
    port=PORT,
    credentials=pika.PlainCredentials("guest", "guest"),
    connection_attempts=1,
    socket_timeout=10,
    blocked_connection_timeout=10,
)


def roundtrip():
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        exchange, queue = unique("pika.x"), unique("pika.q")
        channel.exchange_declare(exchange, exchange_type="direct", auto_delete=True)
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, exchange, routing_key="rk")
        properties = pika.BasicProperties(
            content_type="text/plain", headers={"n": 7, "s": "x"}, delivery_mode=2
        )
        bodies = [f"m{i}".encode() for i in range(3)]
        for body in bodies:
            channel.basic_publish(exchange, "rk", body, properties)
        received = []

        def on_message(ch, method, props, body):
            received.append((body, props))
            ch.basic_ack(method.delivery_tag)

        channel.basic_qos(prefetch_count=2)
        tag = channel.basic_consume(queue, on_message)
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        left = channel.queue_declare(queue, passive=True).method.message_count
        # Cancelling the last consumer deletes an auto-delete queue (as RabbitMQ does).
        channel.basic_cancel(tag)
        check([b for b, _ in received] == bodies, f"received {[b for b, _ in received]}")
        props = received[0][1]
        check(props.content_type == "text/plain", f"content_type {props.content_type}")
        check(props.headers == {"n": 7, "s": b"x"} or props.headers == {"n": 7, "s": "x"},
              f"headers {props.headers}")
        check(props.delivery_mode == 2, f"delivery_mode {props.delivery_mode}")
        check(left == 0, f"{left} messages left after acks")
        try:
            channel.queue_declare(queue, passive=True)
            raise AssertionError("the auto-delete queue outlived its last consumer")
        except pika.exceptions.ChannelClosedByBroker as err:
            check(err.reply_code == 404, f"passive declare after cancel: {err.reply_code}")
        return "3 messages in order, properties kept, queue empty after acks"


def nack_requeue():
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        queue = unique("pika.nack")
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"again")
        method, _, body = channel.basic_get(queue)
        check(method is not None and body == b"again", "basic.get found nothing")
        check(not method.redelivered, "first delivery marked redelivered")
        channel.basic_nack(method.delivery_tag, requeue=True)
        method, _, body = channel.basic_get(queue)
        check(method is not None and body == b"again", "requeued message not redelivered")
        check(method.redelivered, "requeued message without redelivered flag")
        channel.basic_ack(method.delivery_tag)
        method, _, _ = channel.basic_get(queue)
        check(method is None, "acked message delivered again")
        return "requeued with redelivered=true, gone after ack"


def confirms():
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = unique("pika.confirm")
        channel.queue_declare(queue, auto_delete=True)
        for i in range(20):
            channel.basic_publish("", queue, f"c{i}".encode(), mandatory=True)
        count = channel.queue_declare(queue, passive=True).method.message_count
        check(count == 20, f"{count} of 20 confirmed messages in the queue")
        try:
            channel.basic_publish("amq.direct", unique("nowhere"), b"lost", mandatory=True)
            raise AssertionError("an unroutable mandatory publish was confirmed silently")
        except pika.exceptions.UnroutableError as err:
            returned = err.messages[0].method
            check(returned.reply_code == 312 and returned.reply_text == "NO_ROUTE",
                  f"return {returned.reply_code} {returned.reply_text}")
        try:
            channel.basic_publish(unique("missing.x"), "rk", b"x")
            raise AssertionError("a publish to a missing exchange was confirmed")
        except pika.exceptions.ChannelClosedByBroker as err:
            check(err.reply_code == 404, f"closed with {err.reply_code} {err.reply_text}")
        return "20 acked, unroutable -> 312 NO_ROUTE, missing exchange -> 404"


def server_named():
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        check(queue.startswith("amq.gen-"), f"server-named queue {queue!r}")
        channel.basic_publish("", queue, b"mine")
        method, _, body = channel.basic_get(queue, auto_ack=True)
        check(body == b"mine", f"got {body!r}")
        other = pika.BlockingConnection(PARAMS).channel()
        try:
            other.queue_declare(queue, passive=True)
            other.basic_consume(queue, lambda *a: None)
            raise AssertionError("another connection could consume an exclusive queue")
        except pika.exceptions.ChannelClosedByBroker as err:
            check(err.reply_code == 405, f"other connection got {err.reply_code}")
        finally:
            other.connection.close()
        return f"{queue[:16]}..., 405 for another connection"


def transactions():
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        queue = unique("pika.tx")
        channel.queue_declare(queue, auto_delete=True)
        channel.tx_select()
        channel.basic_publish("", queue, b"rolled back")
        channel.tx_rollback()
        channel.basic_publish("", queue, b"committed")
        count = channel.queue_declare(queue, passive=True).method.message_count
        check(count == 0, f"{count} messages visible before commit")
        channel.tx_commit()
        method, _, body = channel.basic_get(queue, auto_ack=True)
        check(body == b"committed", f"got {body!r}")
        check(method.message_count == 0, f"get-ok message_count {method.message_count}")
        return "rollback dropped one publish, commit delivered the other"


def heartbeats_and_large_body():
    params = pika.ConnectionParameters(
        host="127.0.0.1", port=PORT, credentials=PARAMS.credentials, heartbeat=1
    )
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        queue = unique("pika.large")
        channel.queue_declare(queue, auto_delete=True)
        # Idle for 4 heartbeat intervals: each side must keep the other from timing out.
        connection.sleep(4)
        check(connection.is_open, "the connection closed while idle with heartbeat=1")
        body = bytes(range(256)) * 2048  # 512 KiB: four 128 KiB body frames
        channel.basic_publish("", queue, body)
        _, _, got = channel.basic_get(queue, auto_ack=True)
        check(got == body, f"large body came back as {len(got or b'')} bytes")
        return "idle 4 s with heartbeat=1 stayed open; 512 KiB body intact"


def message_15_mib():
    """A 15 MiB persistent message (under the 16 MiB `amqp.max_message_bytes` default),
    confirmed, consumed and acked byte for byte."""
    body = bytes(range(256)) * (15 * 4096)
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = unique("pika.15mib")
        channel.queue_declare(queue, durable=True)
        memory = BrokerMemory()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
        got = None
        for _, _, delivered in channel.consume(queue, inactivity_timeout=30):
            got = delivered
            break
        check(got == body, f"15 MiB body came back as {len(got or b'')} bytes")
        channel.cancel()
        channel.queue_delete(queue)
        growth = memory.growth()
        if growth is None:
            return "15 MiB persistent message confirmed, consumed intact"
        ratio = growth / len(body)
        check(ratio < 3, f"the broker's peak memory grew {ratio:.2f}x the message size")
        return f"15 MiB persistent message confirmed, consumed intact, broker RSS +{ratio:.2f}x"


def update_secret():
    """connection.update-secret is answered and the connection keeps working."""
    with pika.BlockingConnection(PARAMS) as connection:
        connection.update_secret("guest", "token refreshed")
        channel = connection.channel()
        queue = unique("pika.secret")
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"after update-secret")
        _, _, got = channel.basic_get(queue, auto_ack=True)
        check(got == b"after update-secret", f"got {got!r} after update-secret")
        return "update-secret-ok; the connection carries on"


def close_with_delivery_of_deleted_queue():
    """Closing a channel that holds an unacked delivery of a queue deleted since gets
    close-ok, as RabbitMQ answers, and the connection stays open."""
    with pika.BlockingConnection(PARAMS) as connection:
        channel = connection.channel()
        queue = unique("pika.gone")
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"held")
        method, _, _ = channel.basic_get(queue, auto_ack=False)
        check(method is not None, "nothing to get")
        other = connection.channel()
        other.queue_delete(queue)
        channel.close()
        check(connection.is_open, "the connection closed with the channel")
        again = connection.channel()
        again.queue_declare(unique("pika.after"), auto_delete=True)
        return "close-ok for a channel holding a deleted queue's delivery; connection open"


scenario("roundtrip", roundtrip)
scenario("nack-requeue", nack_requeue)
scenario("confirms", confirms)
scenario("server-named", server_named)
scenario("transactions", transactions)
scenario("heartbeat-large-body", heartbeats_and_large_body)
scenario("message-15mib", message_15_mib)
scenario("update-secret", update_secret)
scenario("close-deleted-queue", close_with_delivery_of_deleted_queue)
finish()
