"""RocketMQ part of the Prometheus suite's workload, run with the Python `rocketmq` 0.4.4 client
(compat/rocketmq's venv): 40 sends to `payments`, a push consumer in group `settle` that fails
the first delivery of every tenth message (so it goes through `%RETRY%settle`) and runs until
every other message and at least one retried one arrived, and a shutdown that commits the
group's offsets.

    python prometheus_rocketmq_workload.py NAMESRV_ADDR
"""

import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer, SendStatus

SENT = 40
FAIL_EVERY = 10


def main():
    namesrv = sys.argv[1]
    producer = Producer("PG-pay")
    producer.set_namesrv_addr(namesrv)
    producer.start()
    for at in range(SENT):
        message = Message("payments")
        message.set_keys(f"pay-{at}")
        message.set_tags("TagA")
        message.set_body(f"payment {at}")
        result = producer.send_sync(message)
        assert result.status == SendStatus.OK, result
    producer.shutdown()

    seen, retried = set(), set()
    lock = threading.Lock()
    done = threading.Event()

    def on_message(message):
        key = message.keys if isinstance(message.keys, str) else message.keys.decode()
        with lock:
            first_failure = key.endswith("0") and key not in retried
            if first_failure:
                retried.add(key)
            else:
                seen.add(key)
                # Every message once, at least one of them after a retry round.
                if len(seen) >= SENT - len(retried) and seen & retried:
                    done.set()
        if first_failure:
            # The client answers a raising callback with RECONSUME_LATER: a send-back.
            raise RuntimeError(f"failing {key} once on purpose")

    consumer = PushConsumer("settle")
    consumer.set_namesrv_addr(namesrv)
    consumer.subscribe("payments", on_message)
    consumer.start()
    done.wait(60)
    time.sleep(2)  # let the client commit what it consumed
    consumer.shutdown()
    if not done.is_set():
        raise SystemExit(f"consumed {len(seen)} of {SENT}, retried {sorted(retried)}")
    print(f"sent {SENT}, group settle consumed {len(seen)} "
          f"({len(seen & retried)} of {len(retried)} failed once came back through %RETRY%settle)")


if __name__ == "__main__":
    main()
