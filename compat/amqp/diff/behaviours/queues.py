"""Queues: declare (server-named, passive, reserved names, the equivalence check, argument
validation), counts in declare-ok / purge-ok / delete-ok, exclusive and auto-delete lifetimes,
delete conditions, x-max-length overflow and x-message-ttl."""

import pika

from common import attempt, behaviour, declare_ok, get_bodies, pump, settle


def publish(ch, queue, bodies, **properties):
    for body in bodies:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(**properties))


def drained(ctx, arguments, batches, wait=0.3):
    """Declares queue `q` with `arguments`, publishes each (bodies, properties) batch, waits,
    then returns what basic.get drains from it and deletes it."""
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments=arguments)
    for bodies, properties in batches:
        publish(ch, ctx.name("q"), bodies, **properties)
    settle(wait)
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-declare-server-named")
def _(ctx):
    ch = ctx.channel()
    ok = ch.queue_declare("", exclusive=True).method
    return [ok.queue, ok.message_count, ok.consumer_count]


@behaviour("queue", "queue-declare-passive-missing")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.queue_declare(ctx.name("nope"), passive=True))


@behaviour("queue", "queue-declare-reserved-amq-prefix")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.queue_declare("amq.q-" + ctx.prefix))


def redeclare(ctx, first, second):
    """Declares queue `q` with `first`, then again with `second`; returns how that ended."""
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), **first)
    out = attempt(lambda: declare_ok(ch, ctx.name("q"), **second))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


# The equivalence check: (behaviour, first declare, second declare). pika sends 10 as a 32-bit
# 'I' and 2**40 as a 64-bit 'l', so the integer-width case mixes both.
REDECLARE_CASES = [
    ("queue-redeclare-other-durable", {}, {"durable": True}),
    ("queue-redeclare-other-auto-delete", {}, {"auto_delete": True}),
    ("queue-redeclare-argument-missing", {"arguments": {"x-max-length": 10}}, {}),
    ("queue-redeclare-argument-changed", {"arguments": {"x-max-length": 10}},
     {"arguments": {"x-max-length": 20}}),
    ("queue-redeclare-argument-added", {}, {"arguments": {"x-message-ttl": 500}}),
    ("queue-redeclare-integer-width", {"arguments": {"x-message-ttl": 10, "x-max-length": 2**40}},
     {"arguments": {"x-message-ttl": 10, "x-max-length": 2**40}}),
]

for case, first, second in REDECLARE_CASES:
    behaviour("queue", case)(lambda ctx, f=first, s=second: redeclare(ctx, f, s))


@behaviour("queue", "queue-redeclare-passive-ignores-arguments")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 10})
    out = attempt(lambda: declare_ok(ch, ctx.name("q"), passive=True, durable=True))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


def declare_with(ctx, arguments, **flags):
    ch = ctx.channel()
    out = attempt(lambda: declare_ok(ch, ctx.name("q"), arguments=arguments, **flags))
    if out.startswith("ok"):
        ch.queue_delete(ctx.name("q"))
    return out


# Argument validation: (behaviour, arguments, declare flags), each one declare attempt.
ARGUMENT_CASES = [
    ("queue-arg-max-length-wrong-type", {"x-max-length": "ten"}, {}),
    ("queue-arg-max-length-negative", {"x-max-length": -1}, {}),
    ("queue-arg-message-ttl-negative", {"x-message-ttl": -5}, {}),
    ("queue-arg-overflow-invalid", {"x-overflow": "explode"}, {}),
    ("queue-arg-dead-letter-exchange-wrong-type", {"x-dead-letter-exchange": 5}, {}),
    ("queue-arg-queue-type-invalid", {"x-queue-type": "bogus"}, {}),
    ("queue-arg-quorum-non-durable", {"x-queue-type": "quorum"}, {}),
    ("queue-arg-quorum-exclusive", {"x-queue-type": "quorum"},
     {"durable": True, "exclusive": True}),
    ("queue-arg-unknown-accepted", {"x-made-up": "yes", "y-other": 1}, {}),
    ("queue-arg-message-ttl-wrong-type", {"x-message-ttl": "soon"}, {}),
    ("queue-arg-overflow-wrong-type", {"x-overflow": 1}, {}),
    ("queue-arg-single-active-consumer-wrong-type", {"x-single-active-consumer": "yes"}, {}),
    ("queue-arg-dead-letter-routing-key-alone", {"x-dead-letter-routing-key": "k"}, {}),
]

for case, arguments, flags in ARGUMENT_CASES:
    behaviour("queue", case)(lambda ctx, a=arguments, f=flags: declare_with(ctx, a, **f))


@behaviour("queue", "queue-declare-ok-counts")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["a", "b", "c"])
    ch.basic_consume(ctx.name("q"), lambda *a: None, auto_ack=False)
    pump(ch.connection, 0.3)
    other = ctx.channel()
    publish(other, ctx.name("q"), ["d"])
    settle()
    counts = declare_ok(other, ctx.name("q"), passive=True)
    other.queue_delete(ctx.name("q"))
    return counts


@behaviour("queue", "queue-declare-ok-ready-count")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["a", "b", "c"])
    ch.basic_get(ctx.name("q"), auto_ack=False)
    counts = [declare_ok(ch, ctx.name("q")), declare_ok(ch, ctx.name("q"), passive=True)]
    ch.queue_delete(ctx.name("q"))
    return counts


@behaviour("queue", "queue-exclusive-other-connection")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), exclusive=True)
    other = ctx.channel()
    return [attempt(lambda: ctx.channel().queue_declare(ctx.name("q"), exclusive=True)),
            attempt(lambda: ctx.channel().queue_declare(ctx.name("q"), passive=True)),
            attempt(lambda: other.basic_consume(ctx.name("q"), lambda *a: None)),
            attempt(lambda: ctx.channel().queue_purge(ctx.name("q"))),
            attempt(lambda: ctx.channel().queue_delete(ctx.name("q")))]


@behaviour("queue", "queue-exclusive-deleted-with-connection")
def _(ctx):
    owner = ctx.connect()
    owner.channel().queue_declare(ctx.name("q"), exclusive=True)
    owner.close()
    settle()
    return attempt(lambda: ctx.channel().queue_declare(ctx.name("q"), passive=True))


@behaviour("queue", "queue-auto-delete-after-last-consumer")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), auto_delete=True)
    alive_unused = attempt(lambda: declare_ok(ctx.channel(), ctx.name("q"), passive=True))
    first = ch.basic_consume(ctx.name("q"), lambda *a: None)
    second = ch.basic_consume(ctx.name("q"), lambda *a: None)
    ch.basic_cancel(first)
    after_one = attempt(lambda: declare_ok(ctx.channel(), ctx.name("q"), passive=True))
    ch.basic_cancel(second)
    settle()
    after_all = attempt(lambda: declare_ok(ctx.channel(), ctx.name("q"), passive=True))
    return [alive_unused, after_one, after_all]


@behaviour("queue", "queue-purge-count")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["a", "b", "c", "d"])
    ch.basic_get(ctx.name("q"), auto_ack=False)
    purged = ch.queue_purge(ctx.name("q")).method.message_count
    ch.close()
    settle()
    ch = ctx.channel()
    left = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return [purged, left]


@behaviour("queue", "queue-purge-missing")
def _(ctx):
    return attempt(lambda: ctx.channel().queue_purge(ctx.name("nope")))


@behaviour("queue", "queue-delete-count")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["a", "b", "c"])
    return ch.queue_delete(ctx.name("q")).method.message_count


@behaviour("queue", "queue-delete-missing")
def _(ctx):
    return attempt(lambda: ctx.channel().queue_delete(ctx.name("nope")).method.message_count)


@behaviour("queue", "queue-delete-if-empty")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["a"])
    out = attempt(lambda: ch.queue_delete(ctx.name("q"), if_empty=True))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-delete-if-unused")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    ch.basic_consume(ctx.name("q"), lambda *a: None)
    out = attempt(lambda: ctx.channel().queue_delete(ctx.name("q"), if_unused=True))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "max-length-drop-head")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 2})
    publish(ch, ctx.name("q"), ["1", "2", "3", "4"])
    settle()  # RabbitMQ applies publishes asynchronously to the queue process
    out = [declare_ok(ch, ctx.name("q"), passive=True), get_bodies(ch, ctx.name("q"))]
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "max-length-reject-publish-confirms")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    outcomes = [attempt(lambda b=b: ch.basic_publish("", ctx.name("q"), b)) for b in [b"1", b"2"]]
    out = [outcomes, get_bodies(ch, ctx.name("q"))]
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "max-length-zero")
def _(ctx):
    return drained(ctx, {"x-max-length": 0}, [(["1"], {})])


@behaviour("queue", "message-ttl-queue-expires")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-message-ttl": 100})
    publish(ch, ctx.name("q"), ["old"])
    settle(0.4)
    publish(ch, ctx.name("q"), ["new"])
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "message-ttl-zero-without-consumer")
def _(ctx):
    return drained(ctx, {"x-message-ttl": 0}, [(["gone"], {})])


@behaviour("queue", "per-message-expiration")
def _(ctx):
    return drained(ctx, {}, [(["short"], {"expiration": "50"}),
                             (["long"], {"expiration": "60000"})])


@behaviour("queue", "per-message-expiration-invalid")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    outs = []
    for value in ["abc", "-5"]:
        ch = ctx.channel()
        publish(ch, ctx.name("q"), ["m"], expiration=value)
        outs.append(attempt(lambda c=ch: c.queue_declare(ctx.name("q"), passive=True) and None))
    ctx.channel().queue_delete(ctx.name("q"))
    return outs
