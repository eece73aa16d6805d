"""kombu (py-amqp transport): SimpleQueue put/get/ack, and a topic exchange with a Producer
and a Consumer exchanging JSON payloads through drain_events."""

import socket
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue

from compat import URL, check, finish, scenario, unique


def simple_queue():
    with Connection(URL, connect_timeout=5) as connection:
        queue = connection.SimpleQueue(unique("kombu.simple"), queue_opts={"auto_delete": True})
        payloads = [{"n": i, "text": "é"} for i in range(5)]
        for payload in payloads:
            queue.put(payload)
        got = []
        for _ in payloads:
            message = queue.get(block=True, timeout=5)
            got.append(message.payload)
            message.ack()
        check(got == payloads, f"got {got}")
        check(queue.qsize() == 0, f"{queue.qsize()} left after acks")
        queue.close()
        return "5 JSON payloads in order, empty after acks"


def topic_producer_consumer():
    with Connection(URL, connect_timeout=5) as connection:
        exchange = Exchange(unique("kombu.topic"), type="topic", auto_delete=True)
        queue = Queue(unique("kombu.q"), exchange, routing_key="orders.*", auto_delete=True)
        got = []

        def on_message(body, message):
            got.append((message.delivery_info["routing_key"], body))
            message.ack()

        with Consumer(connection, [queue], callbacks=[on_message], prefetch_count=4):
            producer = Producer(connection, exchange=exchange, serializer="json")
            producer.publish({"id": 1}, routing_key="orders.new", declare=[queue])
            producer.publish({"id": 2}, routing_key="orders.eu.new")  # '*' is one word only
            producer.publish({"id": 3}, routing_key="orders.paid")
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except socket.timeout:
                    pass
            try:  # a third message would be a routing error
                connection.drain_events(timeout=0.3)
            except socket.timeout:
                pass
        expected = [("orders.new", {"id": 1}), ("orders.paid", {"id": 3})]
        check(got == expected, f"got {got}")
        return "orders.* matched 2 of 3 routing keys"


scenario("simple-queue", simple_queue)
scenario("topic-producer-consumer", topic_producer_consumer)
finish()
