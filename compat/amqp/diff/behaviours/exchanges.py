"""Exchanges: declare/delete rules, reserved names, the default exchange, routing by type,
exchange-to-exchange bindings, alternate exchanges and auto-delete."""

from common import attempt, behaviour, get_bodies


def routed(ch, exchange, keys, queues, headers=None):
    """Publishes one message per routing key and returns which queue got which keys."""
    import pika

    for key in keys:
        properties = pika.BasicProperties(headers=headers.get(key)) if headers else None
        ch.basic_publish(exchange, key, key.encode() or b"-", properties)
    return {q[-2:]: get_bodies(ch, q) for q in queues}


def bound_queues(ctx, ch, exchange, bindings):
    queues = []
    for suffix, key, arguments in bindings:
        queue = ctx.name(suffix)
        ch.queue_declare(queue, auto_delete=False)
        ch.queue_bind(queue, exchange, key, arguments=arguments)
        queues.append(queue)
    return queues


def with_queue(ctx, action):
    """Runs `action(channel, queue)` against a fresh queue `q`; returns how it ended."""
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    out = attempt(lambda: action(ch, ctx.name("q")) and None)
    ctx.channel().queue_delete(ctx.name("q"))
    return out


def cleanup(ch, queues=(), exchanges=()):
    for queue in queues:
        ch.queue_delete(queue)
    for exchange in exchanges:
        ch.exchange_delete(exchange)


@behaviour("exchange", "exchange-declare-passive-missing")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare(ctx.name("nope"), passive=True))


@behaviour("exchange", "exchange-redeclare-other-type")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "direct", auto_delete=True)
    out = attempt(lambda: ch.exchange_declare(ctx.name("x"), "fanout", auto_delete=True))
    ctx.channel().exchange_delete(ctx.name("x"))
    return out


@behaviour("exchange", "exchange-redeclare-other-durable")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "direct")
    out = attempt(lambda: ch.exchange_declare(ctx.name("x"), "direct", durable=True))
    ctx.channel().exchange_delete(ctx.name("x"))
    return out


@behaviour("exchange", "exchange-redeclare-other-arguments")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "direct", arguments={"alternate-exchange": "a"})
    out = attempt(lambda: ch.exchange_declare(ctx.name("x"), "direct",
                                              arguments={"alternate-exchange": "b"}))
    ctx.channel().exchange_delete(ctx.name("x"))
    return out


@behaviour("exchange", "exchange-redeclare-same")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "topic")
    out = attempt(lambda: ch.exchange_declare(ctx.name("x"), "topic"))
    ch.exchange_delete(ctx.name("x"))
    return out


@behaviour("exchange", "exchange-declare-reserved-amq-prefix")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare("amq.mine-" + ctx.prefix, "direct"))


@behaviour("exchange", "exchange-declare-amq-direct-again")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare("amq.direct", "direct", durable=True))


@behaviour("exchange", "exchange-declare-passive-amq-topic")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare("amq.topic", passive=True))


@behaviour("exchange", "exchange-declare-unknown-type")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare(ctx.name("x"), "weird"))


@behaviour("exchange", "exchange-declare-default")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_declare("", "direct"))


@behaviour("exchange", "exchange-delete-missing")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_delete(ctx.name("nope")))


@behaviour("exchange", "exchange-delete-amq-direct")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.exchange_delete("amq.direct"))


@behaviour("exchange", "exchange-delete-if-unused-bound")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "direct")
    queues = bound_queues(ctx, ch, ctx.name("x"), [("q1", "k", None)])
    out = attempt(lambda: ch.exchange_delete(ctx.name("x"), if_unused=True))
    cleanup(ctx.channel(), queues, [ctx.name("x")])
    return out


@behaviour("exchange", "publish-missing-exchange")
def _(ctx):
    ch = ctx.channel()
    ch.basic_publish(ctx.name("nope"), "k", b"m")
    return attempt(lambda: ch.queue_declare("", exclusive=True) and None)


@behaviour("exchange", "publish-internal-exchange")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "fanout", internal=True)
    ch.basic_publish(ctx.name("x"), "k", b"m")
    out = attempt(lambda: ch.queue_declare("", exclusive=True) and None)
    ctx.channel().exchange_delete(ctx.name("x"))
    return out


@behaviour("exchange", "route-direct")
def _(ctx):
    ch = ctx.channel()
    queues = bound_queues(ctx, ch, "amq.direct",
                          [("q1", ctx.name("a"), None), ("q2", ctx.name("b"), None)])
    out = routed(ch, "amq.direct", [ctx.name("a"), ctx.name("b"), ctx.name("c")], queues)
    cleanup(ch, queues)
    return out


@behaviour("exchange", "route-fanout")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "fanout")
    queues = bound_queues(ctx, ch, ctx.name("x"), [("q1", "ignored", None), ("q2", "", None)])
    out = routed(ch, ctx.name("x"), ["k1", "k2"], queues)
    cleanup(ch, queues, [ctx.name("x")])
    return out


@behaviour("exchange", "route-topic-wildcards")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "topic")
    queues = bound_queues(ctx, ch, ctx.name("x"), [
        ("q1", "a.*", None), ("q2", "a.#", None), ("q3", "#", None), ("q4", "*.b.*", None),
        ("q5", "#.c", None)])
    keys = ["a", "a.b", "a.b.c", "x.b.y", "c", "a..c", ""]
    out = routed(ch, ctx.name("x"), keys, queues)
    cleanup(ch, queues, [ctx.name("x")])
    return out


@behaviour("exchange", "route-headers-all-any")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "headers")
    queues = bound_queues(ctx, ch, ctx.name("x"), [
        ("q1", "", {"x-match": "all", "a": 1, "b": "two"}),
        ("q2", "", {"x-match": "any", "a": 1, "b": "two"}),
        ("q3", "", {"a": 1}),
        ("q4", "", {"x-match": "any-with-x", "x-k": "v"}),
        ("q5", "", {"x-match": "any", "x-k": "v"})])
    headers = {"m1": {"a": 1, "b": "two"}, "m2": {"a": 1}, "m3": {"b": "two", "c": 3},
               "m4": {"a": 2}, "m5": {"x-k": "v"}}
    out = routed(ch, ctx.name("x"), list(headers), queues, headers)
    cleanup(ch, queues, [ctx.name("x")])
    return out


@behaviour("exchange", "route-exchange-to-exchange")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("src"), "topic")
    ch.exchange_declare(ctx.name("dst"), "fanout")
    ch.exchange_bind(ctx.name("dst"), ctx.name("src"), "a.*")
    queues = bound_queues(ctx, ch, ctx.name("dst"), [("q1", "", None)])
    first = routed(ch, ctx.name("src"), ["a.b", "b.a"], queues)
    ch.exchange_unbind(ctx.name("dst"), ctx.name("src"), "a.*")
    second = routed(ch, ctx.name("src"), ["a.c"], queues)
    cleanup(ch, queues, [ctx.name("src"), ctx.name("dst")])
    return [first, second]


@behaviour("exchange", "exchange-bind-missing-source")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("dst"), "fanout")
    out = attempt(lambda: ch.exchange_bind(ctx.name("dst"), ctx.name("nope"), "k"))
    ctx.channel().exchange_delete(ctx.name("dst"))
    return out


@behaviour("exchange", "route-alternate-exchange")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("ae"), "fanout")
    ch.exchange_declare(ctx.name("x"), "direct", arguments={"alternate-exchange": ctx.name("ae")})
    queues = bound_queues(ctx, ch, ctx.name("x"), [("q1", "known", None)])
    queues += bound_queues(ctx, ch, ctx.name("ae"), [("q2", "", None)])
    out = routed(ch, ctx.name("x"), ["known", "unknown"], queues)
    cleanup(ch, queues, [ctx.name("x"), ctx.name("ae")])
    return out


@behaviour("exchange", "exchange-auto-delete-after-last-unbind")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "direct", auto_delete=True)
    queues = bound_queues(ctx, ch, ctx.name("x"), [("q1", "k", None)])
    before = attempt(lambda: ch.exchange_declare(ctx.name("x"), passive=True) and None)
    ch.queue_unbind(queues[0], ctx.name("x"), "k")
    after = attempt(lambda: ch.exchange_declare(ctx.name("x"), passive=True) and None)
    cleanup(ctx.channel(), queues)
    return [before, after]


@behaviour("exchange", "bind-missing-queue")
def _(ctx):
    ch = ctx.channel()
    return attempt(lambda: ch.queue_bind(ctx.name("nope"), "amq.direct", "k") and None)


@behaviour("exchange", "bind-missing-exchange")
def _(ctx):
    return with_queue(ctx, lambda ch, q: ch.queue_bind(q, ctx.name("nope"), "k"))


@behaviour("exchange", "bind-default-exchange")
def _(ctx):
    return with_queue(ctx, lambda ch, q: ch.queue_bind(q, "", "k"))


@behaviour("exchange", "unbind-missing-binding")
def _(ctx):
    return with_queue(ctx, lambda ch, q: ch.queue_unbind(q, "amq.direct", "never-bound"))


@behaviour("exchange", "default-exchange-routes-by-queue-name")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    ch.basic_publish("", ctx.name("q"), b"direct-to-queue")
    ch.basic_publish("", ctx.name("other"), b"lost")
    out = get_bodies(ch, ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("exchange", "exchange-delete-default")
def _(ctx):
    return attempt(lambda: ctx.channel().exchange_delete(""))


@behaviour("exchange", "exchange-auto-delete-after-queue-delete")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "fanout", auto_delete=True)
    queues = bound_queues(ctx, ch, ctx.name("x"), [("q1", "", None)])
    ch.queue_delete(queues[0])
    return attempt(lambda: ch.exchange_declare(ctx.name("x"), passive=True) and None)


@behaviour("exchange", "exchange-auto-delete-never-bound")
def _(ctx):
    ch = ctx.channel()
    ch.exchange_declare(ctx.name("x"), "fanout", auto_delete=True)
    out = attempt(lambda: ch.exchange_declare(ctx.name("x"), passive=True) and None)
    ch.exchange_delete(ctx.name("x"))
    return out
