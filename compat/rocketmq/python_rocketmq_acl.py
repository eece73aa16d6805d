"""Python `rocketmq` 0.4.4 (the bundled C++ client) against a broker with `rocketmq.acl_enabled`:
the `acl` table of ./run. The client signs every request with `set_session_credentials(AccessKey,
SecretKey, channel)` (RocketMQ plain ACL: AccessKey, HMAC-SHA1 Signature over the sorted fields).

  signed-send       the user (a broker user added with --rocketmq-secret, permissions on its topic
                    and group) sends SENT messages: every result SEND_OK
  signed-consume    a push consumer of its group with the same credentials receives exactly them
  unsigned-send     a producer without credentials is refused (NO_PERMISSION, code 16)
  wrong-secret      a producer signing with a wrong secret key is refused (NO_PERMISSION)
  unsigned-consume  a push consumer without credentials, in a new group of the same topic, gets
                    none of the messages within UNSIGNED_WAIT_S (its pulls are refused)

A scenario after a failed one is reported FAIL ("skipped: ..."). Every wait has a deadline.
"""

import argparse
import sys
import time
import traceback

from rocketmq.client import Message, Producer, SendStatus

from python_rocketmq_client import start_consumer

CLIENT = "python-rocketmq"
SCENARIOS = ("signed-send", "signed-consume", "unsigned-send", "wrong-secret", "unsigned-consume")
SENT = 10
CONSUME_TIMEOUT_S = 60.0
# An unsigned consumer that would be served gets its first messages within about 5 s (its
# rebalance, then a pull); twice that without any shows it is refused.
UNSIGNED_WAIT_S = 10.0


def parse_args():
    parser = argparse.ArgumentParser(description=f"{CLIENT} ACL scenarios against Tributary")
    parser.add_argument("--namesrv", required=True, help="host:port of the name server")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    return parser.parse_args()


def main():
    args = parse_args()
    bodies = [f"{CLIENT} acl {i}".encode() for i in range(SENT)]

    def producer(name, credentials=None):
        made = Producer(f"{args.group}-{name}", timeout=5000)
        made.set_namesrv_addr(args.namesrv)
        if credentials is not None:
            made.set_session_credentials(*credentials, "")
        made.start()
        return made

    def send(made, body):
        msg = Message(args.topic)
        msg.set_tags("acl")
        msg.set_keys(body.decode())
        msg.set_body(body)
        return made.send_sync(msg)

    def signed_send():
        made = producer("signed", (args.access_key, args.secret_key))
        try:
            for body in bodies:
                result = send(made, body)
                if result.status != SendStatus.OK:
                    raise AssertionError(f"send of {body!r}: {result}")
        finally:
            made.shutdown()
        return f"{SENT} signed sends SEND_OK as {args.access_key}"

    def consume(group, instance, credentials, timeout_s):
        consumer, received = start_consumer(
            args, group, args.topic, "*", instance, credentials=credentials
        )
        try:
            return received.wait_for(lambda got: len(got) >= SENT, timeout_s, quiet_s=2.0)
        finally:
            consumer.shutdown()

    def signed_consume():
        got = consume(args.group, "acl-signed", (args.access_key, args.secret_key), CONSUME_TIMEOUT_S)
        seen = sorted(body for _, _, _, body, _ in got)
        if seen != sorted(bodies):
            raise AssertionError(f"received {len(seen)} messages: {seen[:3]}")
        return f"{SENT} received once each, bodies equal"

    def refused(credentials, who):
        made = producer(who, credentials)
        try:
            result = send(made, b"must not be stored")
        except Exception as err:  # noqa: BLE001 -- the refusal is an exception of this API
            text = str(err)
            if "16" not in text and "permission" not in text.lower():
                raise AssertionError(f"refused, but not with NO_PERMISSION: {text[:200]}") from err
            return f"refused: {text.splitlines()[0][:150]}"
        finally:
            made.shutdown()
        raise AssertionError(f"sent: {result}")

    def unsigned_send():
        return refused(None, "unsigned")

    def wrong_secret():
        return refused((args.access_key, args.secret_key + "-wrong"), "wrong")

    def unsigned_consume():
        got = consume(f"{args.group}-unsigned", "acl-unsigned", None, UNSIGNED_WAIT_S)
        if got:
            raise AssertionError(f"an unsigned consumer received {len(got)} messages")
        return f"no message in {UNSIGNED_WAIT_S:.0f} s"

    steps = {
        "signed-send": signed_send,
        "signed-consume": signed_consume,
        "unsigned-send": unsigned_send,
        "wrong-secret": wrong_secret,
        "unsigned-consume": unsigned_consume,
    }
    failed = None
    for name in SCENARIOS:
        if failed is not None:
            report(name, False, f"skipped: {failed} failed")
            continue
        started = time.monotonic()
        try:
            detail = steps[name]()
            report(name, True, f"{detail} ({time.monotonic() - started:.1f}s)")
        except Exception as err:  # noqa: BLE001 -- any client error fails the scenario, reported
            traceback.print_exc(file=sys.stderr)
            report(name, False, f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
            failed = name
    return 0 if failed is None else 1


def report(scenario, passed, detail):
    print(f"RESULT {CLIENT} {scenario} {'PASS' if passed else 'FAIL'} {detail}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
