"""Queue features other helpers are building (priorities, x-expires, x-max-length-bytes,
streams, global qos, reject-publish-dlx); listed in FINDINGS.md as "being built" while they
differ, so the suite shows when they land."""

from behaviours.queues import drained
from common import attempt, behaviour, declare_ok, get_bodies, pump, settle


@behaviour("features", "priority-queue-order")
def _(ctx):
    batches = [([body], {"priority": priority})
               for body, priority in [("low", 1), ("high", 9), ("none", None), ("mid", 5)]]
    return drained(ctx, {"x-max-priority": 10}, batches)


@behaviour("features", "queue-expires-unused")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), arguments={"x-expires": 200})
    settle(0.8)
    return attempt(lambda: declare_ok(ctx.channel(), ctx.name("q"), passive=True))


@behaviour("features", "max-length-bytes-drop-head")
def _(ctx):
    return drained(ctx, {"x-max-length-bytes": 10}, [(["aaaa", "bbbb", "cccc"], {})])


@behaviour("features", "reject-publish-dlx-dead-letters")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("dead"))
    ch.queue_declare(ctx.name("q"), arguments={
        "x-max-length": 1, "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": ctx.name("dead")})
    for body in [b"kept", b"refused"]:
        ch.basic_publish("", ctx.name("q"), body)
    settle()
    out = [get_bodies(ch, ctx.name("q")), get_bodies(ch, ctx.name("dead"))]
    ch.queue_delete(ctx.name("q"))
    ch.queue_delete(ctx.name("dead"))
    return out


@behaviour("features", "stream-queue-declare-and-get")
def _(ctx):
    ch = ctx.channel()
    declared = attempt(lambda: declare_ok(ch, ctx.name("s"), durable=True,
                                          arguments={"x-queue-type": "stream"}))
    got = attempt(lambda: ch.basic_get(ctx.name("s")) and None)
    ctx.channel().queue_delete(ctx.name("s"))
    return [declared, got]


@behaviour("features", "stream-consume-without-prefetch")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("s"), durable=True, arguments={"x-queue-type": "stream"})
    out = attempt(lambda: ch.basic_consume(ctx.name("s"), lambda *a: None))
    ctx.channel().queue_delete(ctx.name("s"))
    return out


@behaviour("features", "qos-global-prefetch")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"))
    for body in "12345":
        ch.basic_publish("", ctx.name("q"), body.encode())
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    for _ in range(2):
        ch.basic_consume(ctx.name("q"), lambda c, m, p, b: got.append(b.decode()))
    pump(ch.connection, 0.5)
    ch.queue_delete(ctx.name("q"))
    return len(got)


@behaviour("features", "qos-global-and-per-consumer")
def _(ctx):
    ch = ctx.channel()
    got = {}
    ch.basic_qos(prefetch_count=2)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    for queue in ["a", "b"]:
        ch.queue_declare(ctx.name(queue))
        for body in "12345":
            ch.basic_publish("", ctx.name(queue), body.encode())
        got[queue] = []
        ch.basic_consume(ctx.name(queue), lambda c, m, p, b, q=queue: got[q].append(m.delivery_tag))
    pump(ch.connection, 0.5)
    first = sorted(len(tags) for tags in got.values())
    ch.basic_ack(max(got["a"] + got["b"]), multiple=True)
    pump(ch.connection, 0.5)
    total = sum(len(tags) for tags in got.values())
    ch.basic_qos(prefetch_count=0, global_qos=True)
    pump(ch.connection, 0.5)
    # Each consumer holds at most 2 unacked once the channel limit is gone.
    lifted = sum(len(tags) for tags in got.values()) - total
    for queue in ["a", "b"]:
        ch.queue_delete(ctx.name(queue))
    return [sum(first), max(first) <= 2, total, lifted]


@behaviour("features", "qos-global-quorum-consumer")
def _(ctx):
    setup = ctx.channel()
    setup.queue_declare(ctx.name("q"), durable=True, arguments={"x-queue-type": "quorum"})
    ch = ctx.channel()
    ch.basic_qos(prefetch_count=2, global_qos=True)
    out = attempt(lambda: ch.basic_consume(ctx.name("q"), lambda *a: None))
    ctx.channel().queue_delete(ctx.name("q"))
    return out


@behaviour("features", "quorum-reject-publish-dlx")
def _(ctx):
    ch = ctx.channel()
    declared = attempt(lambda: ch.queue_declare(ctx.name("q"), durable=True, arguments={
        "x-queue-type": "quorum", "x-max-length": 1, "x-overflow": "reject-publish-dlx"}))
    if not declared.startswith("ok"):
        return declared
    ch.confirm_delivery()
    confirms = [attempt(lambda b=body: ch.basic_publish("", ctx.name("q"), b))
                for body in [b"old", b"new"]]
    settle()
    out = [declared, confirms, get_bodies(ch, ctx.name("q"))]
    ch.queue_delete(ctx.name("q"))
    return out


@behaviour("features", "quorum-queue-delivery-count")
def _(ctx):
    ch = ctx.channel()
    ch.queue_declare(ctx.name("q"), durable=True, arguments={"x-queue-type": "quorum"})
    ch.basic_publish("", ctx.name("q"), b"m")
    settle()
    method, _, _ = ch.basic_get(ctx.name("q"))
    ch.basic_nack(method.delivery_tag, requeue=True)
    _, props, _ = ch.basic_get(ctx.name("q"))
    ch.queue_delete(ctx.name("q"))
    return props.headers
