"""The Prometheus suite (issue 16): a real Prometheus scrapes a broker that served a short
workload on all three protocols; every PromQL expression of every dashboard in grafana/ and
every metric family users' existing dashboards query (with its labels) must return at least one
series through Prometheus' HTTP API, and `promtool check metrics` must pass on a scrape.

Run by .ci/prometheus-suite, which installs Prometheus and the clients and builds the broker:

    python prometheus_suite.py --broker BIN --rocketmq-python PY [--keep]

Steps: broker on free ports in a temp dir -> Prometheus on loopback scraping it every second ->
workload (confluent-kafka, pika and the Python `rocketmq` client in a subprocess, plus raw
RocketMQ remoting for a transaction, a send-back to the DLQ and a malformed frame, a malformed
Kafka frame) -> a few scrapes -> queries. Prints one line per check and a summary; exits 1 on
any failure.
"""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "grafana" / "dashboards"
JOB = "tributary"

# Metric families users' existing dashboards query (kafka_exporter / Grafana 7589, RabbitMQ's
# plugin / RabbitMQ-Overview 10991, rocketmq-exporter / 10477, process metrics), each with the
# labels those dashboards select on. Each must return a series with every label non-empty.
COMPAT_FAMILIES = [
    ("kafka_topic_partitions", ["topic"]),
    ("kafka_topic_partition_current_offset", ["topic", "partition"]),
    ("kafka_topic_partition_oldest_offset", ["topic", "partition"]),
    ("kafka_consumergroup_current_offset", ["consumergroup", "topic", "partition"]),
    ("kafka_consumergroup_lag", ["consumergroup", "topic", "partition"]),
    ("rabbitmq_identity_info",
     ["rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id", "rabbitmq_endpoint"]),
    ("rabbitmq_global_messages_received_total", []),
    ("rabbitmq_global_messages_routed_total", []),
    ("rabbitmq_global_messages_delivered_total", []),
    ("rabbitmq_global_messages_redelivered_total", []),
    ("rabbitmq_global_messages_acknowledged_total", []),
    ("rabbitmq_global_messages_confirmed_total", []),
    ("rabbitmq_global_messages_unroutable_dropped_total", []),
    ("rabbitmq_global_messages_unroutable_returned_total", []),
    ("rabbitmq_global_messages_received_confirm_total", []),
    ("rabbitmq_global_messages_delivered_consume_auto_ack_total", []),
    ("rabbitmq_global_messages_delivered_consume_manual_ack_total", []),
    ("rabbitmq_global_messages_delivered_get_auto_ack_total", []),
    ("rabbitmq_global_messages_delivered_get_manual_ack_total", []),
    ("rabbitmq_global_messages_get_empty_total", []),
    ("rabbitmq_queue_messages_ready", ["vhost", "queue"]),
    ("rabbitmq_queue_messages_unacked", ["vhost", "queue"]),
    ("rabbitmq_connections", []),
    ("rabbitmq_connections_opened_total", []),
    ("rabbitmq_connections_closed_total", []),
    ("rabbitmq_channels", []),
    ("rabbitmq_channels_opened_total", []),
    ("rabbitmq_channels_closed_total", []),
    ("rabbitmq_queues", []),
    ("rabbitmq_queues_declared_total", []),
    ("rabbitmq_queues_created_total", []),
    ("rabbitmq_queues_deleted_total", []),
    ("rabbitmq_consumers", []),
    ("rabbitmq_process_open_fds", []),
    ("rabbitmq_process_max_fds", []),
    ("rabbitmq_process_resident_memory_bytes", []),
    ("rabbitmq_resident_memory_limit_bytes", []),
    ("rabbitmq_disk_space_available_bytes", []),
    ("rabbitmq_disk_space_available_limit_bytes", []),
    ("rabbitmq_build_info", ["rabbitmq_version"]),
    ("rocketmq_broker_tps", ["cluster", "broker"]),
    ("rocketmq_broker_qps", ["cluster", "broker"]),
    ("rocketmq_producer_tps", ["cluster", "broker", "topic"]),
    ("rocketmq_producer_offset", ["cluster", "broker", "topic"]),
    ("rocketmq_consumer_tps", ["cluster", "broker", "topic", "group"]),
    ("rocketmq_consumer_offset", ["cluster", "broker", "topic", "group"]),
    ("rocketmq_group_diff", ["group", "topic", "countOfOnlineConsumers", "msgModel"]),
    ("rocketmq_group_retrydiff", ["group", "topic", "countOfOnlineConsumers", "msgModel"]),
    ("rocketmq_topic_retry_offset", ["cluster", "broker", "topic"]),
    ("rocketmq_topic_dlq_offset", ["cluster", "broker", "group"]),
    ("process_resident_memory_bytes", []),
    ("process_virtual_memory_bytes", []),
    ("process_open_fds", []),
    ("process_max_fds", []),
    ("process_cpu_seconds_total", []),
    ("process_start_time_seconds", []),
]

# Query shapes of the originals' dashboards (7589, 10991, 10477): their joins and groupings
# must work on Tributary's families as they do on the exporters'.
EXISTING_DASHBOARD_QUERIES = [
    'sum(kafka_topic_partitions{topic!="__consumer_offsets"}) by (topic)',
    "sum(delta(kafka_topic_partition_current_offset[5m])/5) by (topic)",
    "sum(kafka_consumergroup_lag) by (consumergroup, topic)",
    "sum(delta(kafka_consumergroup_current_offset[5m])/5) by (consumergroup, topic)",
    "sum(rabbitmq_queue_messages_ready * on(instance, job) group_left(rabbitmq_cluster) rabbitmq_identity_info) by (rabbitmq_cluster)",
    "sum(rate(rabbitmq_global_messages_received_total[1m]) * on(instance, job) group_left(rabbitmq_cluster) rabbitmq_identity_info) by (rabbitmq_cluster)",
    "rabbitmq_build_info * on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info",
    "(rabbitmq_resident_memory_limit_bytes - rabbitmq_process_resident_memory_bytes) * on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info",
    "rabbitmq_disk_space_available_bytes * on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info",
    "(rabbitmq_process_max_fds - rabbitmq_process_open_fds) * on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info",
    "sum(rabbitmq_channels * on(instance, job) group_left(rabbitmq_cluster) rabbitmq_identity_info) by (rabbitmq_cluster)",
    "sum(rocketmq_producer_tps) by (topic)",
    "sum(rocketmq_group_diff) by (group, topic)",
    "sum(rocketmq_broker_tps) by (broker)",
    "sum(rocketmq_broker_qps) by (broker)",
    "sum(rocketmq_topic_retry_offset) by (topic)",
    "sum(rocketmq_topic_dlq_offset) by (group)",
]

# promtool's lint on label names the originals' dashboards select on (camelCase in
# rocketmq-exporter); any other finding fails.
ALLOWED_PROMTOOL = re.compile(
    r"^rocketmq_group_(diff|retrydiff|dlqdiff) label names should be written in 'snake_case' not 'camelCase'$"
)


def log(message):
    print(f"[prometheus-suite] {message}", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def wait_until(what, predicate, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


# --- RocketMQ remoting, raw (what the Python client cannot do: transactions, a send-back ----------
# straight to the dead-letter queue, a malformed frame) -----------------------------------------

class Remoting:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.opaque = 0

    def call(self, code, fields, body=b""):
        self.opaque += 1
        header = json.dumps({
            "code": code, "language": "PYTHON", "version": 401, "opaque": self.opaque,
            "flag": 0, "extFields": {k: str(v) for k, v in fields.items()},
        }).encode()
        frame = struct.pack(">iI", 4 + len(header) + len(body), len(header)) + header + body
        self.sock.sendall(frame)
        length = struct.unpack(">i", self._read(4))[0]
        payload = self._read(length)
        header_length = struct.unpack(">I", payload[:4])[0] & 0xFFFFFF
        return json.loads(payload[4:4 + header_length])

    def _read(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def close(self):
        self.sock.close()


def properties(**pairs):
    return "".join(f"{k}\x01{v}\x02" for k, v in pairs.items())


def rocketmq_raw(broker_port):
    """A committed transaction, a pending one, a send-back to the DLQ and a malformed frame."""
    client = Remoting(broker_port)
    now = int(time.time() * 1000)
    for commit in (True, False):
        sent = client.call(10, {
            "producerGroup": "PG-ledger", "topic": "ledger", "defaultTopic": "TBW102",
            "defaultTopicQueueNums": 4, "queueId": 0, "sysFlag": 4, "bornTimestamp": now,
            "flag": 0, "properties": properties(TRAN_MSG="true", PGROUP="PG-ledger"),
            "reconsumeTimes": 0, "unitMode": "false",
        }, b"half message")
        assert sent["code"] == 0, sent
        if commit:
            msg_id = sent["extFields"]["msgId"]
            ended = client.call(37, {
                "producerGroup": "PG-ledger", "tranStateTableOffset": sent["extFields"]["queueOffset"],
                "commitLogOffset": int(msg_id[-16:], 16), "commitOrRollback": 8,
                "fromTransactionCheck": "false", "msgId": msg_id,
            })
            assert ended["code"] == 0, ended
    # A message a consumer gives up on at once: sent back with no reconsumes left, it goes to
    # %DLQ%settle.
    sent = client.call(10, {
        "producerGroup": "PG-pay", "topic": "payments", "defaultTopic": "TBW102",
        "defaultTopicQueueNums": 4, "queueId": 1, "sysFlag": 0, "bornTimestamp": now, "flag": 0,
        "properties": properties(KEYS="poison"), "reconsumeTimes": 0,
    }, b"poison")
    assert sent["code"] == 0, sent
    back = client.call(36, {
        "group": "settle", "offset": int(sent["extFields"]["msgId"][-16:], 16), "delayLevel": 0,
        "originTopic": "payments", "maxReconsumeTimes": 0,
    })
    assert back["code"] == 0, back
    client.close()
    bad = socket.create_connection(("127.0.0.1", broker_port), timeout=5)
    bad.sendall(struct.pack(">i", 8) + b"\xff" * 8)
    try:
        bad.recv(1)
    except OSError:
        pass
    bad.close()


def kafka_workload(port):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic("orders", 3, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for at in range(300):
        producer.produce("orders", key=f"k{at}", value=f"order {at}" * 4)
    assert producer.flush(30) == 0
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "billing", "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe(["orders"])
    received = 0
    deadline = time.monotonic() + 60
    while received < 150 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            received += 1
    assert received >= 150, received
    consumer.commit(asynchronous=False)
    consumer.close()
    # One malformed request (an API key no broker knows): the connection is closed and counted.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
        body = struct.pack(">hhi", 32000, 0, 1) + struct.pack(">h", 1) + b"x"
        bad.sendall(struct.pack(">i", len(body)) + body)
        try:
            bad.recv(1)
        except OSError:
            pass
    return f"produced 300, group billing consumed {received}"


def amqp_workload(port):
    """Returns the connection it leaves open (a consumer with unacked messages)."""
    import pika

    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("jobs", durable=True)
    channel.queue_declare("scratch")
    for at in range(60):
        channel.basic_publish("", "jobs", f"job {at}".encode())
    channel.basic_publish("", "no-such-queue", b"dropped")  # unroutable, not mandatory
    try:
        channel.basic_publish("", "no-such-queue", b"returned", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    channel.queue_delete("scratch")
    # A connection that opens and closes (the opened and closed counters).
    pika.BlockingConnection(params).close()
    got = 0
    for _ in range(10):
        method, _, _ = channel.basic_get("jobs", auto_ack=False)
        if method is not None:
            channel.basic_ack(method.delivery_tag)
            got += 1
    method, _, _ = channel.basic_get("jobs", auto_ack=False)
    channel.basic_nack(method.delivery_tag, requeue=True)  # redelivered next time
    # A channel error: a passive declare of a queue that does not exist closes the channel.
    errors = connection.channel()
    try:
        errors.queue_declare("missing", passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        pass
    # A consumer that keeps 5 messages unacked while Prometheus scrapes.
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=5)
    held = []
    consumer.basic_consume("jobs", lambda ch, method, props, body: held.append(method.delivery_tag))
    deadline = time.monotonic() + 30
    while len(held) < 5 and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    assert len(held) == 5, held
    for tag in held[:2]:
        consumer.basic_ack(tag)
    held.clear()
    connection.process_data_events(time_limit=0.5)
    return connection, f"published 60, got {got}, consumer holds unacked"


def rocketmq_workload(python, namesrv_port, broker_port):
    script = REPO / ".ci" / "prometheus_rocketmq_workload.py"
    result = subprocess.run([python, str(script), f"127.0.0.1:{namesrv_port}"],
                            capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise SystemExit(f"rocketmq workload failed:\n{result.stdout}\n{result.stderr}")
    rocketmq_raw(broker_port)
    return result.stdout.strip().splitlines()[-1]


# --- Prometheus ---------------------------------------------------------------------------------

def start_prometheus(work, target, port):
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    log_file = open(work / "prometheus.log", "w")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    return process


def query(prometheus, expr):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        status, text = http_get(url, timeout=10)
    except urllib.error.HTTPError as error:
        return None, error.read().decode()
    answer = json.loads(text)
    if answer.get("status") != "success":
        return None, text
    return answer["data"]["result"], None


def substitute(expr, instance):
    """Grafana's variables as a dashboard with every variable on `All` sends them."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "5s")
    expr = expr.replace("$__range", "5m")
    expr = expr.replace("$instance", instance)
    expr = expr.replace("$job", JOB)
    # Other variables (topic, consumergroup, vhost, queue, group) on `All`: allValue `.*`.
    return re.sub(r"\$\{?([a-z]+)\}?", ".*", expr)


def dashboard_queries():
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"], None
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            selector, label = match.groups()
            # label_values(m{...}, l) lists l of the series m{...} returns.
            yield path.name, f"variable {variable['name']}", selector.strip(), label


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--rocketmq-python", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tributary-prometheus-"))
    ports = {name: free_port() for name in ("kafka", "amqp", "namesrv", "broker", "http", "prom")}
    env = dict(os.environ,
               TRIBUTARY_DATA_DIR=str(work / "data"),
               TRIBUTARY_KAFKA_PORT=str(ports["kafka"]),
               TRIBUTARY_AMQP_PORT=str(ports["amqp"]),
               TRIBUTARY_ROCKETMQ_NAMESRV_PORT=str(ports["namesrv"]),
               TRIBUTARY_ROCKETMQ_BROKER_PORT=str(ports["broker"]),
               TRIBUTARY_HTTP_PORT=str(ports["http"]),
               # Retries after one second, so the workload's retry round is short.
               TRIBUTARY_ROCKETMQ_DELAY_LEVELS=" ".join(["1s"] * 18),
               TRIBUTARY_LOG="info")
    broker_log = open(work / "broker.log", "w")
    broker = subprocess.Popen([args.broker, "serve"], env=env, stdout=broker_log,
                              stderr=subprocess.STDOUT, cwd=work)
    prometheus = None
    metrics_url = f"http://127.0.0.1:{ports['http']}/metrics"
    prometheus_url = f"http://127.0.0.1:{ports['prom']}"
    failures = []
    try:
        wait_until("broker /health", lambda: http_get(metrics_url.replace("metrics", "health"))[0] == 200)
        prometheus = start_prometheus(work, f"127.0.0.1:{ports['http']}", ports["prom"])
        wait_until("Prometheus ready", lambda: http_get(f"{prometheus_url}/-/ready")[0] == 200)
        started = time.monotonic()
        log("kafka: " + kafka_workload(ports["kafka"]))
        amqp_connection, summary = amqp_workload(ports["amqp"])
        log("amqp: " + summary)
        log("rocketmq: " + rocketmq_workload(args.rocketmq_python, ports["namesrv"], ports["broker"]))
        # RocketMQ's exporter gauges refresh every 5 s; then a few more scrapes.
        time.sleep(max(0.0, 12 - (time.monotonic() - started)) + 7)
        amqp_connection.process_data_events(time_limit=0.1)
        up, _ = query(prometheus_url, f'up{{job="{JOB}"}}')
        assert up and up[0]["value"][1] == "1", f"Prometheus does not scrape the broker: {up}"
        scrapes, _ = query(prometheus_url, f'count_over_time(up{{job="{JOB}"}}[5m])')
        log(f"Prometheus scraped the broker {scrapes[0]['value'][1]} times")

        instance = f"127.0.0.1:{ports['http']}"
        checked = 0
        for board, panel, expr, label in dashboard_queries():
            concrete = substitute(expr, instance)
            series, error = query(prometheus_url, concrete)
            if label and series:
                series = [one for one in series if one["metric"].get(label)]
            checked += 1
            if not series:
                failures.append(f"{board} / {panel}: {concrete} -> {error or 'no series'}")
        log(f"dashboard expressions: {checked - len(failures)}/{checked} return series")
        before = len(failures)
        for family, labels in COMPAT_FAMILIES:
            matchers = ",".join([f'job="{JOB}"'] + [f'{label}!=""' for label in labels])
            series, error = query(prometheus_url, f"{family}{{{matchers}}}")
            if not series:
                failures.append(f"family {family} with labels {labels}: {error or 'no series'}")
        log(f"compatibility families: {len(COMPAT_FAMILIES) - (len(failures) - before)}/"
            f"{len(COMPAT_FAMILIES)} present with their labels")

        before = len(failures)
        for expr in EXISTING_DASHBOARD_QUERIES:
            series, error = query(prometheus_url, expr)
            if not series:
                failures.append(f"existing-dashboard query {expr}: {error or 'no series'}")
        log(f"existing dashboards' query shapes: {len(EXISTING_DASHBOARD_QUERIES) - (len(failures) - before)}/"
            f"{len(EXISTING_DASHBOARD_QUERIES)} return series")

        _, page = http_get(metrics_url)
        (work / "metrics.txt").write_text(page)
        result = subprocess.run(["promtool", "check", "metrics"], input=page, text=True,
                                capture_output=True)
        findings = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        unexpected = [line for line in findings if not ALLOWED_PROMTOOL.match(line)]
        if unexpected:
            failures.extend(f"promtool: {line}" for line in unexpected)
        log(f"promtool check metrics: {len(findings)} finding(s), "
            f"{len(findings) - len(unexpected)} allowed (rocketmq-exporter's camelCase labels), "
            f"{page.count('# TYPE ')} families")
        amqp_connection.close()
    finally:
        for process in (prometheus, broker):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        broker_log.close()
    for failure in failures:
        print(f"FAIL {failure}")
    if failures:
        print(f"broker log: {work / 'broker.log'} (kept)")
        sys.exit(1)
    log("PASS")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    else:
        log(f"work directory kept: {work}")


if __name__ == "__main__":
    main()
