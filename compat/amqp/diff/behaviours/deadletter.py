"""Dead-lettering: the `x-death` table layout (keys, types, order, counts), x-first-death-*,
reasons rejected / expired / maxlen, the dead-letter routing key, chains through several
queues and cycles. Headers are read with raw.py so field types and key order are visible."""

import pika

from common import behaviour, settle
from raw import Raw, property_headers


def scrub(value):
    """Drops the death times (they differ per run) but keeps their type."""
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        kind, inner = value
        return (kind, "<time>") if kind == "T" else (kind, scrub(inner))
    return value


def dead_letters(ctx, queue, count=1):
    """Reads up to `count` messages from `queue` with raw basic.get: routing key, headers."""
    raw = Raw(ctx.port)
    raw.handshake()
    raw.open_channel()
    out = []
    for _ in range(count):
        got = raw.get_raw(1, queue)
        if got is None:
            out.append("empty")
            continue
        method, (properties, body) = got
        out.append([method.exchange, method.routing_key, body.decode(),
                    scrub(property_headers(properties))])
    raw.close()
    return out


def dlx_pair(ctx, ch, source_args=None, dl_key=None):
    """A source queue dead-lettering through a fanout exchange into a `dead` queue."""
    ch.exchange_declare(ctx.name("dlx"), "fanout")
    ch.queue_declare(ctx.name("dead"))
    ch.queue_bind(ctx.name("dead"), ctx.name("dlx"))
    arguments = {"x-dead-letter-exchange": ctx.name("dlx")}
    if dl_key:
        arguments["x-dead-letter-routing-key"] = dl_key
    arguments.update(source_args or {})
    ch.queue_declare(ctx.name("src"), arguments=arguments)
    return ctx.name("src"), ctx.name("dead")


def cleanup(ctx, *queues):
    ch = ctx.channel()
    for queue in queues:
        ch.queue_delete(ctx.name(queue))
    ch.exchange_delete(ctx.name("dlx"))


@behaviour("deadletter", "dlx-rejected-x-death-layout")
def _(ctx):
    ch = ctx.channel()
    src, dead = dlx_pair(ctx, ch)
    ch.basic_publish("", src, b"r", pika.BasicProperties(headers={"zz": "kept", "app": 1}))
    method, _, _ = ch.basic_get(src)
    ch.basic_reject(method.delivery_tag, requeue=False)
    settle()
    out = dead_letters(ctx, dead)
    cleanup(ctx, "src", "dead")
    return out


@behaviour("deadletter", "dlx-nack-multiple")
def _(ctx):
    ch = ctx.channel()
    src, dead = dlx_pair(ctx, ch)
    for body in [b"1", b"2"]:
        ch.basic_publish("", src, body)
    ch.basic_get(src)
    method, _, _ = ch.basic_get(src)
    ch.basic_nack(method.delivery_tag, multiple=True, requeue=False)
    settle()
    out = [m[2] for m in dead_letters(ctx, dead, 2) if m != "empty"]
    cleanup(ctx, "src", "dead")
    return out


def automatic_deaths(ctx, source_args, publishes, reads=1):
    """Publishes `(body, properties)` into a source queue that dead-letters by itself (TTL or
    length); returns what reached the dead-letter queue."""
    ch = ctx.channel()
    src, dead = dlx_pair(ctx, ch, source_args)
    for body, properties in publishes:
        ch.basic_publish("", src, body, pika.BasicProperties(**properties))
    settle(0.5)
    out = dead_letters(ctx, dead, reads)
    cleanup(ctx, "src", "dead")
    return out


@behaviour("deadletter", "dlx-expired-per-message")
def _(ctx):
    return automatic_deaths(ctx, {}, [(b"e", {"expiration": "30"})])


@behaviour("deadletter", "dlx-expired-queue-ttl")
def _(ctx):
    return automatic_deaths(ctx, {"x-message-ttl": 30}, [(b"t", {})])


@behaviour("deadletter", "dlx-maxlen")
def _(ctx):
    return automatic_deaths(ctx, {"x-max-length": 1}, [(b"first", {}), (b"second", {})], 2)


@behaviour("deadletter", "dlx-reject-publish-dlx")
def _(ctx):
    return automatic_deaths(ctx, {"x-max-length": 1, "x-overflow": "reject-publish-dlx"},
                            [(b"kept", {}), (b"refused", {"expiration": "60000"})], 2)


@behaviour("deadletter", "dlx-routing-key-override")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("dlx"), "direct")
    ch.queue_declare(ctx.name("dead"))
    ch.queue_bind(ctx.name("dead"), ctx.name("dlx"), "retry")
    ch.queue_declare(ctx.name("src"), arguments={"x-dead-letter-exchange": ctx.name("dlx"),
                                                 "x-dead-letter-routing-key": "retry"})
    ch.exchange_declare(ctx.name("in"), "topic")
    ch.queue_bind(ctx.name("src"), ctx.name("in"), "orders.*")
    ch.basic_publish(ctx.name("in"), "orders.new", b"o")
    method, _, _ = ch.basic_get(ctx.name("src"))
    ch.basic_nack(method.delivery_tag, requeue=False)
    settle()
    out = dead_letters(ctx, ctx.name("dead"))
    cleanup(ctx, "src", "dead")
    ctx.channel().exchange_delete(ctx.name("in"))
    return out


@behaviour("deadletter", "dlx-chain-two-queues")
def _(ctx):
    ch = ctx.channel()
    # src --expired--> mid (default exchange, by routing key) --rejected--> dead
    ch.queue_declare(ctx.name("dead"))
    ch.queue_declare(ctx.name("mid"), arguments={"x-dead-letter-exchange": "",
                                                 "x-dead-letter-routing-key": ctx.name("dead")})
    ch.queue_declare(ctx.name("src"), arguments={"x-dead-letter-exchange": "",
                                                 "x-dead-letter-routing-key": ctx.name("mid"),
                                                 "x-message-ttl": 20})
    ch.basic_publish("", ctx.name("src"), b"c", pika.BasicProperties(headers={"zz": 1, "a": 2}))
    settle(0.5)
    method, _, _ = ch.basic_get(ctx.name("mid"))
    if method is not None:
        ch.basic_reject(method.delivery_tag, requeue=False)
    settle()
    out = dead_letters(ctx, ctx.name("dead"))
    ch = ctx.channel()
    for queue in ["src", "mid", "dead"]:
        ch.queue_delete(ctx.name(queue))
    return out


@behaviour("deadletter", "dlx-same-queue-counted")
def _(ctx):
    ch = ctx.channel()
    # retry loop: work --rejected--> wait (ttl) --expired--> work, twice round.
    ch.queue_declare(ctx.name("work"), arguments={"x-dead-letter-exchange": "",
                                                  "x-dead-letter-routing-key": ctx.name("wait")})
    ch.queue_declare(ctx.name("wait"), arguments={"x-dead-letter-exchange": "",
                                                  "x-dead-letter-routing-key": ctx.name("work"),
                                                  "x-message-ttl": 20})
    ch.basic_publish("", ctx.name("work"), b"loop")
    for _ in range(2):
        method = None
        for _ in range(20):
            method, _, _ = ch.basic_get(ctx.name("work"))
            if method is not None:
                break
            settle(0.05)
        if method is not None:
            ch.basic_reject(method.delivery_tag, requeue=False)
        settle(0.3)
    settle(0.3)
    out = dead_letters(ctx, ctx.name("work"))
    ch = ctx.channel()
    for queue in ["work", "wait"]:
        ch.queue_delete(ctx.name(queue))
    return out


@behaviour("deadletter", "dlx-missing-exchange-drops")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("src"), arguments={"x-dead-letter-exchange": ctx.name("nope")})
    ch.basic_publish("", ctx.name("src"), b"x")
    method, _, _ = ch.basic_get(ctx.name("src"))
    ch.basic_reject(method.delivery_tag, requeue=False)
    settle()
    out = [ch.is_open, ch.queue_declare(ctx.name("src"), passive=True).method.message_count]
    ch.queue_delete(ctx.name("src"))
    return out


@behaviour("deadletter", "dlx-reject-back-into-same-queue")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-dead-letter-exchange": "",
                                               "x-dead-letter-routing-key": ctx.name("q")})
    ch.basic_publish("", ctx.name("q"), b"again")
    method, _, _ = ch.basic_get(ctx.name("q"))
    ch.basic_reject(method.delivery_tag, requeue=False)
    settle()
    out = dead_letters(ctx, ctx.name("q"))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("deadletter", "dlx-expired-cycle-dropped")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-dead-letter-exchange": "",
                                               "x-dead-letter-routing-key": ctx.name("q"),
                                               "x-message-ttl": 20})
    ch.basic_publish("", ctx.name("q"), b"cycle")
    settle(0.5)
    out = ch.queue_declare(ctx.name("q"), passive=True).method.message_count
    ch.queue_delete(ctx.name("q"))
    return out
