"""basic.*: get, ack/nack/reject (tags, multiple, requeue order, redelivered), qos and
prefetch, consume (tags, exclusive, duplicates), cancel (both ways), recover, mandatory returns,
confirms, transactions, properties and bodies, direct reply-to, single active consumer."""

import struct

import pika
from pika import spec

from common import attempt, behaviour, get_bodies, pump, settle
from raw import Raw, method_frame, raw_frame


def fresh_queue(ctx, ch, bodies=(), suffix="q", **kwargs):
    queue = ctx.name(suffix)
    ch.queue_declare(queue, **kwargs)
    for body in bodies:
        ch.basic_publish("", queue, body.encode())
    return queue


def collect(ch, queue, seconds=0.4, **consume):
    """Consumes for a while without acking; returns [(body, redelivered, tag)]."""
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((b.decode(), m.redelivered,
                                                           m.delivery_tag)), **consume)
    pump(ch.connection, seconds)
    return got


@behaviour("basic", "get-empty")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    method, _, _ = ch.basic_get(queue)
    ch.queue_delete(queue)
    return repr(method)


@behaviour("basic", "get-ok-fields")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["a", "b", "c"])
    m, _, body = ch.basic_get(queue, auto_ack=False)
    out = [m.delivery_tag, m.redelivered, m.exchange, m.routing_key, m.message_count, body]
    ch.queue_delete(queue)
    return out


@behaviour("basic", "nack-requeue-order-and-redelivered")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1", "2", "3"])
    first, _, _ = ch.basic_get(queue)
    second, _, _ = ch.basic_get(queue)
    ch.basic_nack(second.delivery_tag, requeue=True)
    ch.basic_nack(first.delivery_tag, requeue=True)
    out = get_bodies(ch, queue)
    ch.queue_delete(queue)
    return out


@behaviour("basic", "reject-requeue-false-drops")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1", "2"])
    first, _, _ = ch.basic_get(queue)
    ch.basic_reject(first.delivery_tag, requeue=False)
    out = get_bodies(ch, queue)
    ch.queue_delete(queue)
    return out


@behaviour("basic", "ack-unknown-tag")
def _(ctx):
    ch = ctx.channel()
    ch.basic_ack(99)
    return attempt(lambda: ch.queue_declare("", exclusive=True) and None)


@behaviour("basic", "ack-twice")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1"], auto_delete=False)
    m, _, _ = ch.basic_get(queue)
    ch.basic_ack(m.delivery_tag)
    ch.basic_ack(m.delivery_tag)
    out = attempt(lambda: ch.queue_declare("", exclusive=True) and None)
    ctx.channel().queue_delete(queue)
    return out


@behaviour("basic", "nack-unknown-tag-multiple")
def _(ctx):
    ch = ctx.channel()
    ch.basic_nack(7, multiple=True)
    return attempt(lambda: ch.queue_declare("", exclusive=True) and None)


@behaviour("basic", "ack-multiple-and-zero")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1", "2", "3", "4", "5"])
    tags = [ch.basic_get(queue)[0].delivery_tag for _ in range(5)]
    ch.basic_ack(tags[1], multiple=True)
    ch.basic_nack(0, multiple=True, requeue=True)
    out = [tags, get_bodies(ch, queue)]
    ch.queue_delete(queue)
    return out


@behaviour("basic", "qos-prefetch-size")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.basic_qos(prefetch_size=1000))


@behaviour("basic", "qos-prefetch-count-limits-deliveries")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, [str(i) for i in range(6)])
    ch.basic_qos(prefetch_count=2)
    got = collect(ch, queue)
    first = [body for body, _, _ in got]
    ch.basic_ack(got[-1][2], multiple=True)
    pump(ch.connection, 0.4)
    out = [first, [body for body, _, _ in got]]
    ch.queue_delete(queue)
    return out


def raw_consumer(ctx, queue):
    """A raw connection with channel 1 open, for consume requests pika would not send."""
    raw = Raw(ctx.port)
    raw.handshake()
    raw.open_channel()
    return raw


def raw_consume(raw, queue, tag):
    raw.send(method_frame(1, spec.Basic.Consume(queue=queue, consumer_tag=tag)))
    try:
        return f"consume-ok {raw.expect(spec.Basic.ConsumeOk).method.consumer_tag}"
    except ConnectionError as closed:
        return f"connection.close {closed}"


@behaviour("basic", "consume-generated-tag")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    out = raw_consume(raw_consumer(ctx, queue), queue, "")
    ch.queue_delete(queue)
    return out


@behaviour("basic", "consume-duplicate-tag")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    raw = raw_consumer(ctx, queue)
    out = [raw_consume(raw, queue, "dup"), raw_consume(raw, queue, "dup")]
    ch.queue_delete(queue)
    return out


@behaviour("basic", "consume-exclusive-conflicts")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    ch.basic_consume(queue, lambda *a: None)
    first = attempt(lambda: ctx.channel().basic_consume(queue, lambda *a: None, exclusive=True))
    ch2 = ctx.channel()
    queue2 = fresh_queue(ctx, ch2, suffix="q2")
    ch2.basic_consume(queue2, lambda *a: None, exclusive=True)
    second = attempt(lambda: ctx.channel().basic_consume(queue2, lambda *a: None))
    ctx.channel().queue_delete(queue)
    ctx.channel().queue_delete(queue2)
    return [first, second]


@behaviour("basic", "consume-missing-queue")
def _(ctx):
    return attempt(lambda: ctx.channel().basic_consume(ctx.name("nope"), lambda *a: None))


@behaviour("basic", "cancel-unknown-tag")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.basic_cancel("never-there"))


@behaviour("basic", "unacked-requeued-on-channel-close")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1", "2", "3"])
    ch.basic_get(queue)
    ch.basic_get(queue)
    ch.close()
    settle()
    ch = ctx.channel()
    out = get_bodies(ch, queue)
    ch.queue_delete(queue)
    return out


@behaviour("basic", "recover-requeue")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, ["1", "2"])
    got = collect(ch, queue, seconds=0.3)
    ch.basic_recover(requeue=True)
    pump(ch.connection, 0.4)
    out = [(body, redelivered) for body, redelivered, _ in got]
    ch.queue_delete(queue)
    return out


@behaviour("basic", "server-cancel-on-queue-delete")
def _(ctx):
    connection = ctx.connect()
    ch = connection.channel()
    queue = fresh_queue(ctx, ch)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.NAME))
    ch.basic_consume(queue, lambda *a: None, consumer_tag="watcher")
    ctx.channel().queue_delete(queue)
    pump(connection, 0.5)
    return [cancelled, ch.is_open, list(ch.consumer_tags)]


@behaviour("basic", "mandatory-unroutable-returned")
def _(ctx):
    ch = ctx.channel()
    returns = []
    ch.add_on_return_callback(lambda c, m, p, b: returns.append(
        [m.reply_code, m.reply_text, m.exchange, m.routing_key, b.decode()]))
    ch.basic_publish("amq.direct", ctx.name("nobody"), b"back", mandatory=True)
    ch.basic_publish("amq.direct", ctx.name("nobody"), b"dropped")
    pump(ch.connection, 0.4)
    return returns


@behaviour("basic", "confirm-mandatory-unroutable")
def _(ctx):
    ch = ctx.channel()
    ch.confirm_delivery()
    return [attempt(lambda: ch.basic_publish("", ctx.name("nobody"), b"m", mandatory=True)),
            attempt(lambda: ch.basic_publish("", ctx.name("nobody"), b"m"))]


@behaviour("basic", "tx-then-confirm")
def _(ctx):
    ch = ctx.channel()
    ch.tx_select()
    return attempt(lambda: ch.confirm_delivery())


@behaviour("basic", "confirm-then-tx")
def _(ctx):
    ch = ctx.channel()
    ch.confirm_delivery()
    return attempt(lambda: ch.tx_select())


@behaviour("basic", "tx-commit-and-rollback")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    ch.tx_select()
    ch.basic_publish("", queue, b"committed")
    ch.tx_commit()
    ch.basic_publish("", queue, b"rolled-back")
    ch.tx_rollback()
    out = get_bodies(ctx.channel(), queue, ack=False)
    ctx.channel().queue_delete(queue)
    return out


@behaviour("basic", "tx-commit-without-select")
def _(ctx):
    return attempt(lambda: ctx.channel().tx_commit())


@behaviour("basic", "properties-round-trip")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    sent = pika.BasicProperties(
        content_type="text/plain", content_encoding="utf-8", delivery_mode=2, priority=3,
        correlation_id="c1", reply_to="r1", expiration="60000", message_id="m1",
        timestamp=1700000000, type="t1", user_id="guest", app_id="a1",
        headers={"z": 1, "a": "s", "n": None, "t": True, "arr": [1, "x"], "tab": {"k": 2}})
    ch.basic_publish("", queue, b"body", sent)
    _, got, _ = ch.basic_get(queue)
    ch.queue_delete(queue)
    return {k: v for k, v in vars(got).items() if not k.startswith("_")}


@behaviour("basic", "user-id-mismatch")
def _(ctx):
    ch = ctx.channel()
    ch.basic_publish("", "nobody", b"m", pika.BasicProperties(user_id="mallory"))
    return attempt(lambda: ch.queue_declare("", exclusive=True) and None)


@behaviour("basic", "empty-and-large-bodies")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch)
    large = bytes(range(256)) * 1200
    ch.basic_publish("", queue, b"")
    ch.basic_publish("", queue, large)
    sizes = []
    for _ in range(2):
        _, _, body = ch.basic_get(queue)
        sizes.append([len(body), body == large or body == b""])
    ch.queue_delete(queue)
    return sizes


@behaviour("basic", "publish-immediate")
def _(ctx):
    raw = Raw(ctx.port)
    raw.handshake()
    raw.open_channel()
    raw.send(method_frame(1, spec.Basic.Publish(exchange="", routing_key="x", immediate=True)))
    raw.send(raw_frame(2, 1, struct.pack(">HHQH", 60, 0, 0, 0)))
    return raw.until_close()


@behaviour("basic", "channel-flow-off")
def _(ctx):
    raw = Raw(ctx.port)
    raw.handshake()
    raw.open_channel()
    raw.send(method_frame(1, spec.Channel.Flow(active=False)))
    return raw.until_close()


@behaviour("basic", "direct-reply-to-with-acks")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None))


@behaviour("basic", "direct-reply-to-round-trip")
def _(ctx):
    client = ctx.channel()
    server = ctx.channel()
    queue = fresh_queue(ctx, server)
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(
        [b.decode(), m.redelivered]), auto_ack=True)
    client.basic_publish("", queue, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    settle()
    _, props, body = server.basic_get(queue)
    server.basic_publish("", props.reply_to, b"pong:" + body)
    pump(client.connection, 0.4)
    server.queue_delete(queue)
    return [props.reply_to, replies]


@behaviour("basic", "single-active-consumer")
def _(ctx):
    ch = ctx.channel()
    queue = fresh_queue(ctx, ch, arguments={"x-single-active-consumer": True})
    got = {"a": [], "b": []}
    ch.basic_consume(queue, lambda c, m, p, b: got["a"].append(b.decode()), auto_ack=True,
                     consumer_tag="a")
    ch.basic_consume(queue, lambda c, m, p, b: got["b"].append(b.decode()), auto_ack=True,
                     consumer_tag="b")
    for body in ["1", "2"]:
        ch.basic_publish("", queue, body.encode())
    pump(ch.connection, 0.4)
    ch.basic_cancel("a")
    ch.basic_publish("", queue, b"3")
    pump(ch.connection, 0.4)
    ch.queue_delete(queue)
    return got


@behaviour("basic", "channel-id-reuse")
def _(ctx):
    connection = ctx.connect()
    first = connection.channel(channel_number=5)
    first.close()
    second = connection.channel(channel_number=5)
    return [second.channel_number, second.is_open]
