"""Python `rocketmq` 0.4.4 (the bundled C++ client) against a broker with `rocketmq.acl_enabled`:
the `acl` table of ./run. The client signs every request with `set_session_credentials(AccessKey,
SecretKey, channel)` (RocketMQ plain ACL: AccessKey, HMAC-SHA1 Signature over the sorted fields).

  signed-send       the user (a broker user added with --rocketmq-secret, permissions on its topic
                    and group) sends SENT messages: every result SEND_OK
  signed-consume    a push consumer of its group with the same credentials receives exactly them
  unsigned-send     a producer without credentials is refused: the send raises, and the
                    client's log shows the broker's NO_PERMISSION (code 16) answers
  wrong-secret      a producer signing with a wrong secret key is refused the same way
  unsigned-consume  a push consumer without credentials, in a new group of the same topic, gets
                    none of the messages within UNSIGNED_WAIT_S (its pulls are refused)

A scenario after a failed one is reported FAIL ("skipped: ..."). Every wait has a deadline.
"""

import argparse
import glob
import os
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


# What the C++ client logs for each request the broker answers with NO_PERMISSION: a send
# (`processSendResponse error remark:... error code:16`) or a route query, which the name
# server answers only for a valid signature when the request names an AccessKey
# (`<remark>,16[getTopicRouteInfoFromNameServer...`).
REFUSED = ("error code:16", ",16[getTopicRouteInfoFromNameServer")


def cpp_log_count(needles):
    """Lines with one of `needles` in this process's C++ client log ($HOME/logs/rocketmq-cpp)."""
    count = 0
    for path in glob.glob(os.path.expanduser(f"~/logs/rocketmq-cpp/{os.getpid()}_*")):
        with open(path, encoding="utf-8", errors="replace") as log:
            count += sum(any(needle in line for needle in needles) for line in log)
    return count


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
        credentials = (args.access_key, args.secret_key)
        got = consume(args.group, "acl-signed", credentials, CONSUME_TIMEOUT_S)
        seen = sorted(body for _, _, _, body, _ in got)
        if seen != sorted(bodies):
            raise AssertionError(f"received {len(seen)} messages: {seen[:3]}")
        return f"{SENT} received once each, bodies equal"

    def refused(credentials, who):
        """A send with `credentials` raises, and the broker's answer was NO_PERMISSION (16).

        The C++ client retries a refused send and then raises "No route info of this topic"
        whatever the broker answered, so the code is read from its own log (REFUSED)."""
        before = cpp_log_count(REFUSED)
        made = producer(who, credentials)
        try:
            result = send(made, b"must not be stored")
        except Exception as err:  # noqa: BLE001 -- the refusal is an exception of this API
            raised = str(err).splitlines()[0][:100]
        else:
            raise AssertionError(f"sent: {result}")
        finally:
            made.shutdown()
        deadline = time.monotonic() + 3.0  # the client's log is written by its own thread
        while (refusals := cpp_log_count(REFUSED) - before) == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"raised ({raised}) but no NO_PERMISSION answer was logged")
            time.sleep(0.1)
        return f"{refusals} requests answered NO_PERMISSION (16); raised: {raised}"

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
