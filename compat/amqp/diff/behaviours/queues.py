"""Queues: declare (server-named, passive, reserved names, the equivalence check, argument
validation), counts in declare-ok / purge-ok / delete-ok, exclusive and auto-delete lifetimes,
delete conditions, x-max-length overflow and x-message-ttl."""

import pika

from common import attempt, behaviour, declare_ok, get_bodies, pump, settle


def publish(ch, queue, bodies, **properties):
    for body in bodies:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(**properties))


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


@behaviour("queue", "queue-redeclare-other-durable")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    out = attempt(lambda: ch.queue_declare(ctx.name("q"), durable=True))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-redeclare-other-auto-delete")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    out = attempt(lambda: ch.queue_declare(ctx.name("q"), auto_delete=True))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-redeclare-argument-missing")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 10})
    out = attempt(lambda: ch.queue_declare(ctx.name("q")))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-redeclare-argument-changed")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 10})
    out = attempt(lambda: ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 20}))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-redeclare-argument-added")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    out = attempt(lambda: ch.queue_declare(ctx.name("q"), arguments={"x-message-ttl": 500}))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "queue-redeclare-integer-width")
def _(ctx):
    ch = ctx.channel()
    # pika sends 10 as a 32-bit 'I' and 2**40 as a 64-bit 'l'.
    ch.queue_declare(ctx.name("q"), arguments={"x-message-ttl": 10, "x-max-length": 2**40})
    out = attempt(lambda: declare_ok(ch, ctx.name("q"), arguments={
        "x-message-ttl": 10, "x-max-length": 2**40}))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


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


@behaviour("queue", "queue-arg-max-length-wrong-type")
def _(ctx):
    return declare_with(ctx, {"x-max-length": "ten"})


@behaviour("queue", "queue-arg-max-length-negative")
def _(ctx):
    return declare_with(ctx, {"x-max-length": -1})


@behaviour("queue", "queue-arg-message-ttl-negative")
def _(ctx):
    return declare_with(ctx, {"x-message-ttl": -5})


@behaviour("queue", "queue-arg-overflow-invalid")
def _(ctx):
    return declare_with(ctx, {"x-overflow": "explode"})


@behaviour("queue", "queue-arg-dead-letter-exchange-wrong-type")
def _(ctx):
    return declare_with(ctx, {"x-dead-letter-exchange": 5})


@behaviour("queue", "queue-arg-queue-type-invalid")
def _(ctx):
    return declare_with(ctx, {"x-queue-type": "bogus"})


@behaviour("queue", "queue-arg-quorum-non-durable")
def _(ctx):
    return declare_with(ctx, {"x-queue-type": "quorum"})


@behaviour("queue", "queue-arg-quorum-exclusive")
def _(ctx):
    return declare_with(ctx, {"x-queue-type": "quorum"}, durable=True, exclusive=True)


@behaviour("queue", "queue-arg-unknown-accepted")
def _(ctx):
    return declare_with(ctx, {"x-made-up": "yes", "y-other": 1})


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
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-max-length": 0})
    publish(ch, ctx.name("q"), ["1"])
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


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
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-message-ttl": 0})
    publish(ch, ctx.name("q"), ["gone"])
    settle()
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("queue", "per-message-expiration")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    publish(ch, ctx.name("q"), ["short"], expiration="50")
    publish(ch, ctx.name("q"), ["long"], expiration="60000")
    settle(0.3)
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


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


@behaviour("queue", "queue-arg-message-ttl-wrong-type")
def _(ctx):
    return declare_with(ctx, {"x-message-ttl": "soon"})


@behaviour("queue", "queue-arg-overflow-wrong-type")
def _(ctx):
    return declare_with(ctx, {"x-overflow": 1})


@behaviour("queue", "queue-arg-single-active-consumer-wrong-type")
def _(ctx):
    return declare_with(ctx, {"x-single-active-consumer": "yes"})


@behaviour("queue", "queue-arg-dead-letter-routing-key-alone")
def _(ctx):
    return declare_with(ctx, {"x-dead-letter-routing-key": "k"})
