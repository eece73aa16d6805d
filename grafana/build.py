#!/usr/bin/env python3
"""Writes Tributary's Grafana dashboards (grafana/dashboards/*.json) from the panel lists below.

    python3 grafana/build.py          # rewrite the JSON files
    python3 grafana/build.py --check  # exit 1 if a JSON file differs from what this writes

The JSON files are committed so Grafana can provision them as they are; edit the panels here and
rerun. Conventions (those of grafana/dashboard-linter, checked by `lint` below): a `datasource`
variable every panel uses, `job` and `instance` variables every query selects on,
`$__rate_interval` in every range function, a stable uid, `id: null`. `.ci/prometheus-suite` runs every expression below against a real Prometheus
scraping a broker that served all three protocols, and fails on one that returns no series.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
S = 'job=~"$job",instance=~"$instance"'
RI = "$__rate_interval"


def rate(metric, selector="", by=None, fn="rate"):
    sel = S + ("," + selector if selector else "")
    inner = f"{fn}({metric}{{{sel}}}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, metric, selector="", by=None):
    sel = S + ("," + selector if selector else "")
    group = "le" + (f", {by}" if by else "")
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{sel}}}[{RI}])))"


def gauge(metric, selector="", by=None, agg="sum"):
    sel = S + ("," + selector if selector else "")
    return f"{agg} by ({by}) ({metric}{{{sel}}})" if by else f"{agg}({metric}{{{sel}}})"


def raw(metric, selector=""):
    sel = S + ("," + selector if selector else "")
    return f"{metric}{{{sel}}}"


class Board:
    def __init__(self, uid, title, description, variables=()):
        self.uid, self.title, self.description = uid, title, description
        self.variables = list(variables)
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_height = 0

    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": len(self.panels) + 1,
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def panel(self, title, targets, unit="short", kind="timeseries", width=8, height=8,
              description=""):
        if self.x + width > 24:
            self._newline()
        panel = {
            "type": kind,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y},
            "id": len(self.panels) + 1,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": expr,
                    "legendFormat": legend,
                    "refId": chr(ord("A") + at),
                    **({"format": "table", "instant": True} if kind == "table" else {}),
                }
                for at, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "timeseries":
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def json(self):
        base = [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            variable("job", "label_values(tributary_build_info, job)"),
            variable("instance", 'label_values(tributary_build_info{job=~"$job"}, instance)'),
        ]
        return {
            "__comment": "Written by grafana/build.py; edit there.",
            "id": None,
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["tributary"],
            "editable": True,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "timezone": "",
            "graphTooltip": 1,
            "links": [
                {"type": "dashboards", "tags": ["tributary"], "title": "Tributary",
                 "asDropdown": True}
            ],
            "annotations": {"list": []},
            "templating": {"list": base + self.variables},
            "panels": self.panels,
        }


def variable(name, query, label=None):
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
        "hide": 0,
    }


def overview():
    b = Board("tributary-overview", "Tributary / Overview",
              "Kafka, AMQP 0-9-1 and RocketMQ side by side over one log engine.")
    b.row("Connections")
    b.panel("Open connections by listener", [(gauge("tributary_connections_active", by="protocol"), "{{protocol}}")])
    b.panel("Accepted connections / s", [(rate("tributary_connections_accepted_total", by="protocol"), "{{protocol}}")], unit="ops")
    b.panel("AMQP channels and consumers", [
        (gauge("rabbitmq_channels"), "channels"),
        (gauge("rabbitmq_consumers"), "consumers"),
    ])
    b.row("Requests and messages")
    b.panel("Kafka requests / s by API", [(rate("tributary_kafka_requests_total", by="api"), "{{api}}")], unit="reqps")
    b.panel("AMQP methods / s", [(rate("tributary_amqp_methods_total", by="method"), "{{method}}")], unit="reqps")
    b.panel("RocketMQ requests / s by code", [(rate("tributary_rocketmq_requests_total", by="code"), "code {{code}}")], unit="reqps")
    b.panel("Messages in / s", [
        (rate("tributary_kafka_records_in_total"), "kafka"),
        (rate("rabbitmq_global_messages_received_total"), "amqp"),
        (rate("tributary_rocketmq_messages_in_total"), "rocketmq"),
    ], unit="ops")
    b.panel("Messages out / s", [
        (rate("tributary_kafka_records_out_total"), "kafka"),
        (rate("rabbitmq_global_messages_delivered_total"), "amqp"),
        (rate("tributary_rocketmq_messages_out_total"), "rocketmq"),
    ], unit="ops")
    b.panel("AMQP acks and confirms / s", [
        (rate("rabbitmq_global_messages_acknowledged_total"), "amqp acks"),
        (rate("rabbitmq_global_messages_confirmed_total"), "amqp confirms"),
    ], unit="ops")
    b.row("Latency")
    for q in ("0.5", "0.99"):
        b.panel(f"p{int(float(q) * 100)} request latency", [
            (quantile(q, "tributary_kafka_request_duration_seconds"), "kafka"),
            (quantile(q, "tributary_amqp_method_seconds"), "amqp"),
            (quantile(q, "tributary_rocketmq_request_duration_seconds"), "rocketmq"),
        ], unit="s", width=12)
    b.row("Bytes and errors")
    b.panel("Bytes in / s", [
        (rate("tributary_kafka_bytes_in_total"), "kafka"),
        (rate("tributary_amqp_received_bytes_total"), "amqp"),
        (rate("tributary_storage_appended_bytes_total"), "appended to logs"),
    ], unit="Bps")
    b.panel("Bytes out / s", [
        (rate("tributary_kafka_bytes_out_total"), "kafka"),
        (rate("tributary_amqp_sent_bytes_total"), "amqp"),
    ], unit="Bps")
    b.panel("Errors / s", [
        (rate("tributary_kafka_protocol_errors_total"), "kafka protocol errors"),
        (rate("tributary_amqp_channel_errors_total"), "amqp channel errors"),
        (rate("tributary_rocketmq_malformed_frames_total"), "rocketmq malformed frames"),
    ], unit="ops")
    b.row("Storage")
    b.panel("Appends / s", [(rate("tributary_storage_appended_records_total"), "records")], unit="ops")
    b.panel("fsyncs / s", [(rate("tributary_storage_fsyncs_total"), "fsyncs")], unit="ops")
    b.panel("Segments", [(gauge("tributary_storage_partition_segments"), "segments")])
    b.row("Process")
    b.panel("Memory", [
        (raw("process_resident_memory_bytes"), "resident"),
        (raw("rabbitmq_resident_memory_limit_bytes"), "memory alarm limit"),
    ], unit="bytes")
    b.panel("CPU", [(rate("process_cpu_seconds_total"), "cores used")], unit="short")
    b.panel("File descriptors", [
        (raw("process_open_fds"), "open"),
        (raw("process_max_fds"), "limit"),
    ])
    b.panel("Threads", [(raw("process_threads"), "threads")])
    b.panel("Uptime", [(f"time() - {raw('process_start_time_seconds')}", "uptime")], unit="s")
    b.panel("Build", [(raw("tributary_build_info"), "{{version}}")], kind="table")
    return b


def kafka():
    b = Board("tributary-kafka", "Tributary / Kafka",
              "Topics, partitions, produce and fetch, consumer groups and lag (kafka_exporter's names).",
              [
                  variable("topic", f"label_values(kafka_topic_partitions{{{S}}}, topic)"),
                  variable("consumergroup", f"label_values(kafka_consumergroup_lag{{{S}}}, consumergroup)"),
              ])
    t = 'topic=~"$topic"'
    g = 'consumergroup=~"$consumergroup"'
    b.row("Topics")
    b.panel("Topics", [(f"count({raw('kafka_topic_partitions')})", "topics")], kind="stat", width=4)
    b.panel("Partitions", [(gauge("kafka_topic_partitions"), "partitions")], kind="stat", width=4)
    b.panel("Partitions by topic", [(gauge("kafka_topic_partitions", t, by="topic"), "{{topic}}")], kind="bargauge", width=16)
    b.panel("Messages appended / s by topic (offsets)", [
        (f"sum by (topic) (deriv(kafka_topic_partition_current_offset{{{S},{t}}}[{RI}]))", "{{topic}}"),
    ], unit="ops", width=12, description="How fast the high watermarks grow.")
    b.panel("High watermark and log start by partition", [
        (raw("kafka_topic_partition_current_offset", t), "{{topic}}/{{partition}} end"),
        (raw("kafka_topic_partition_oldest_offset", t), "{{topic}}/{{partition}} start"),
    ], width=12)
    b.row("Produce and fetch")
    b.panel("Records produced / s", [(rate("tributary_kafka_records_in_total", t, by="topic"), "{{topic}}")], unit="ops")
    b.panel("Records fetched / s", [(rate("tributary_kafka_records_out_total", t, by="topic"), "{{topic}}")], unit="ops")
    b.panel("Requests / s by API", [(rate("tributary_kafka_requests_total", by="api"), "{{api}}")], unit="reqps")
    b.panel("Bytes produced / s", [(rate("tributary_kafka_bytes_in_total", t, by="topic"), "{{topic}}")], unit="Bps")
    b.panel("Bytes fetched / s", [(rate("tributary_kafka_bytes_out_total", t, by="topic"), "{{topic}}")], unit="Bps")
    b.panel("Connections", [(gauge("tributary_connections_active", 'protocol="kafka"'), "kafka")])
    b.panel("Produce latency", [
        (quantile("0.5", "tributary_kafka_request_duration_seconds", 'api="produce"'), "p50"),
        (quantile("0.99", "tributary_kafka_request_duration_seconds", 'api="produce"'), "p99"),
    ], unit="s", width=12)
    b.panel("Fetch latency (includes max.wait)", [
        (quantile("0.5", "tributary_kafka_request_duration_seconds", 'api="fetch"'), "p50"),
        (quantile("0.99", "tributary_kafka_request_duration_seconds", 'api="fetch"'), "p99"),
    ], unit="s", width=12)
    b.row("Consumer groups")
    b.panel("Lag by group and topic", [(gauge("kafka_consumergroup_lag", f"{g},{t}", by="consumergroup, topic"), "{{consumergroup}} {{topic}}")], width=12)
    b.panel("Lag by partition", [(raw("kafka_consumergroup_lag", f"{g},{t}"), "{{consumergroup}} {{topic}}/{{partition}}")], width=12)
    b.panel("Committed offsets", [(gauge("kafka_consumergroup_current_offset", f"{g},{t}", by="consumergroup, topic"), "{{consumergroup}} {{topic}}")], width=12)
    b.panel("Consumption rate / s (committed offsets)", [
        (f"sum by (consumergroup, topic) (deriv(kafka_consumergroup_current_offset{{{S},{g},{t}}}[{RI}]))", "{{consumergroup}} {{topic}}"),
    ], unit="ops", width=12)
    b.panel("Protocol errors / s", [(rate("tributary_kafka_protocol_errors_total"), "closed for a protocol error")], unit="ops", width=12)
    return b


def amqp():
    b = Board("tributary-amqp", "Tributary / AMQP 0-9-1",
              "Queues ready and unacked, publish, deliver, ack and confirm rates, connections and channels (RabbitMQ's names).",
              [
                  variable("vhost", f"label_values(rabbitmq_queue_messages{{{S}}}, vhost)"),
                  variable("queue", f'label_values(rabbitmq_queue_messages{{{S},vhost=~"$vhost"}}, queue)'),
              ])
    q = 'vhost=~"$vhost",queue=~"$queue"'
    b.row("Queues")
    b.panel("Queues", [(gauge("rabbitmq_queues"), "queues")], kind="stat", width=4)
    b.panel("Ready messages", [(gauge("rabbitmq_queue_messages_ready", q), "ready")], kind="stat", width=4)
    b.panel("Unacked messages", [(gauge("rabbitmq_queue_messages_unacked", q), "unacked")], kind="stat", width=4)
    b.panel("Consumers", [(gauge("rabbitmq_consumers"), "consumers")], kind="stat", width=4)
    b.panel("Connections", [(gauge("rabbitmq_connections"), "connections")], kind="stat", width=4)
    b.panel("Channels", [(gauge("rabbitmq_channels"), "channels")], kind="stat", width=4)
    b.panel("Ready by queue", [(raw("rabbitmq_queue_messages_ready", q), "{{vhost}} {{queue}}")], width=12)
    b.panel("Unacked by queue", [(raw("rabbitmq_queue_messages_unacked", q), "{{vhost}} {{queue}}")], width=12)
    b.row("Messages")
    b.panel("Published / s", [
        (rate("rabbitmq_global_messages_received_total"), "received"),
        (rate("rabbitmq_global_messages_routed_total"), "routed"),
    ], unit="ops")
    b.panel("Delivered / s", [
        (rate("rabbitmq_global_messages_delivered_total"), "delivered"),
        (rate("rabbitmq_global_messages_redelivered_total"), "redelivered"),
    ], unit="ops")
    b.panel("Deliveries / s by mode", [
        (rate("rabbitmq_global_messages_delivered_consume_manual_ack_total"), "consume, manual ack"),
        (rate("rabbitmq_global_messages_delivered_consume_auto_ack_total"), "consume, auto ack"),
        (rate("rabbitmq_global_messages_delivered_get_manual_ack_total"), "get, manual ack"),
        (rate("rabbitmq_global_messages_delivered_get_auto_ack_total"), "get, auto ack"),
        (rate("rabbitmq_global_messages_get_empty_total"), "get, empty"),
    ], unit="ops")
    b.panel("Unconfirmed publishes / s", [
        (f"{rate('rabbitmq_global_messages_received_confirm_total')} - {rate('rabbitmq_global_messages_confirmed_total')}", "awaiting confirm"),
        (rate("rabbitmq_global_messages_unroutable_returned_total"), "unroutable, returned"),
        (rate("rabbitmq_global_messages_unroutable_dropped_total"), "unroutable, dropped"),
    ], unit="ops")
    b.panel("Acknowledged and confirmed / s", [
        (rate("rabbitmq_global_messages_acknowledged_total"), "consumer acks"),
        (rate("rabbitmq_global_messages_confirmed_total"), "publisher confirms"),
    ], unit="ops")
    b.panel("Method latency p99", [(quantile("0.99", "tributary_amqp_method_seconds", by="method"), "{{method}}")], unit="s", width=12)
    b.panel("Bytes / s", [
        (rate("tributary_amqp_received_bytes_total"), "received"),
        (rate("tributary_amqp_sent_bytes_total"), "sent"),
    ], unit="Bps", width=12)
    b.row("Churn")
    b.panel("Connections opened and closed / s", [
        (rate("rabbitmq_connections_opened_total"), "opened"),
        (rate("rabbitmq_connections_closed_total"), "closed"),
    ], unit="ops")
    b.panel("Channels opened and closed / s", [
        (rate("rabbitmq_channels_opened_total"), "opened"),
        (rate("rabbitmq_channels_closed_total"), "closed"),
    ], unit="ops")
    b.panel("Queues declared, created and deleted / s", [
        (rate("rabbitmq_queues_declared_total"), "declared"),
        (rate("rabbitmq_queues_created_total"), "created"),
        (rate("rabbitmq_queues_deleted_total"), "deleted"),
    ], unit="ops")
    b.panel("Channel errors / s by code", [(rate("tributary_amqp_channel_errors_total", by="code"), "{{code}}")], unit="ops")
    b.row("Node")
    b.panel("Memory and alarm limit", [
        (raw("rabbitmq_process_resident_memory_bytes"), "resident"),
        (raw("rabbitmq_resident_memory_limit_bytes"), "limit"),
    ], unit="bytes")
    b.panel("Free disk and alarm limit", [
        (raw("rabbitmq_disk_space_available_bytes"), "free"),
        (raw("rabbitmq_disk_space_available_limit_bytes"), "limit"),
    ], unit="bytes")
    b.panel("File descriptors", [
        (raw("rabbitmq_process_open_fds"), "open"),
        (raw("rabbitmq_process_max_fds"), "limit"),
    ])
    b.panel("Node", [
        (raw("rabbitmq_identity_info"), "{{rabbitmq_node}}"),
        (raw("rabbitmq_build_info"), "{{rabbitmq_version}}"),
    ], kind="table", width=24, height=5)
    return b


def rocketmq():
    b = Board("tributary-rocketmq", "Tributary / RocketMQ",
              "Sends and pulls, consumer groups and their diff, retry and dead-letter topics, transactions (rocketmq-exporter's names).",
              [
                  variable("topic", f"label_values(rocketmq_producer_offset{{{S}}}, topic)"),
                  variable("group", f"label_values(rocketmq_group_diff{{{S}}}, group)"),
              ])
    t = 'topic=~"$topic"'
    g = 'group=~"$group"'
    b.row("Broker")
    b.panel("Broker TPS (stored / s)", [(gauge("rocketmq_broker_tps", by="broker"), "{{broker}}")], unit="ops")
    b.panel("Broker QPS (pulled / s)", [(gauge("rocketmq_broker_qps", by="broker"), "{{broker}}")], unit="ops")
    b.panel("Requests / s by code", [(rate("tributary_rocketmq_requests_total", by="code"), "code {{code}}")], unit="reqps")
    b.panel("Request latency p99 by code", [(quantile("0.99", "tributary_rocketmq_request_duration_seconds", by="code"), "code {{code}}")], unit="s", width=12)
    b.panel("Connections", [(gauge("tributary_connections_active", 'protocol=~"rocketmq.*"', by="protocol"), "{{protocol}}")], width=12)
    b.row("Send and pull")
    b.panel("Sent / s by topic", [(rate("tributary_rocketmq_messages_in_total", t, by="topic"), "{{topic}}")], unit="ops")
    b.panel("Pulled / s by topic", [(rate("tributary_rocketmq_messages_out_total", t, by="topic"), "{{topic}}")], unit="ops")
    b.panel("Producer TPS by topic", [(gauge("rocketmq_producer_tps", t, by="topic"), "{{topic}}")], unit="ops")
    b.panel("Topic offsets", [(gauge("rocketmq_producer_offset", t, by="topic"), "{{topic}}")], width=12)
    b.panel("Consumer TPS by group", [(gauge("rocketmq_consumer_tps", g, by="group, topic"), "{{group}} {{topic}}")], unit="ops", width=12)
    b.row("Groups")
    b.panel("Group diff (lag)", [(gauge("rocketmq_group_diff", f"{g},{t}", by="group, topic"), "{{group}} {{topic}}")], width=12)
    b.panel("Lag by queue", [(raw("tributary_rocketmq_group_lag", f"{g},{t}"), "{{group}} {{topic}}/{{queue}}")], width=12)
    b.panel("Consumer offsets", [(gauge("rocketmq_consumer_offset", g, by="group, topic"), "{{group}} {{topic}}")], width=12)
    b.panel("Retry diff", [(gauge("rocketmq_group_retrydiff", g, by="group, topic"), "{{group}} {{topic}}")], width=12)
    b.row("Retry, dead letters and transactions")
    b.panel("Retry topic offsets", [(gauge("rocketmq_topic_retry_offset", by="topic"), "{{topic}}")])
    b.panel("Dead-letter topic offsets", [(gauge("rocketmq_topic_dlq_offset", by="group"), "%DLQ%{{group}}")])
    b.panel("Transactions", [
        (gauge("tributary_rocketmq_transactions_pending"), "pending half messages"),
        (rate("tributary_rocketmq_transactions_resolved_total", by="outcome"), "resolved / s: {{outcome}}"),
    ])
    b.panel("Malformed frames / s", [(rate("tributary_rocketmq_malformed_frames_total"), "connections closed")], unit="ops", width=24, height=6)
    return b


def storage():
    b = Board("tributary-storage", "Tributary / Storage",
              "The log engine every protocol writes to: appends, fsyncs, segments, bytes and recovery.",
              [variable("topic", f"label_values(tributary_storage_partition_segments{{{S}}}, topic)")])
    t = 'topic=~"$topic"'
    b.row("Writes")
    b.panel("Records appended / s by topic", [(rate("tributary_storage_appended_records_total", t, by="topic"), "{{topic}}")], unit="ops", width=12)
    b.panel("Bytes appended / s by topic", [(rate("tributary_storage_appended_bytes_total", t, by="topic"), "{{topic}}")], unit="Bps", width=12)
    b.panel("fsyncs / s", [(rate("tributary_storage_fsyncs_total"), "fsyncs")], unit="ops")
    b.panel("fsync latency", [
        (quantile("0.5", "tributary_storage_fsync_duration_seconds"), "p50"),
        (quantile("0.99", "tributary_storage_fsync_duration_seconds"), "p99"),
    ], unit="s", width=16)
    b.row("Stored")
    b.panel("Segments by topic", [(gauge("tributary_storage_partition_segments", t, by="topic"), "{{topic}}")], width=12)
    b.panel("Bytes stored by topic", [(gauge("tributary_storage_partition_bytes", t, by="topic"), "{{topic}}")], unit="bytes", width=12)
    b.panel("Segments deleted (retention)", [(rate("tributary_storage_segments_deleted_total", t, by="topic", fn="increase"), "{{topic}}")])
    b.panel("Last recovery duration", [(raw("tributary_storage_recovery_duration_seconds"), "recovery")], unit="s", kind="stat")
    b.panel("Free disk", [(raw("rabbitmq_disk_space_available_bytes"), "free")], unit="bytes", kind="stat")
    b.row("Process")
    b.panel("Resident memory", [(raw("process_resident_memory_bytes"), "resident")], unit="bytes", width=12)
    b.panel("Open files", [(raw("process_open_fds"), "open"), (raw("process_max_fds"), "limit")], width=12)
    return b


def lint(name, board):
    """dashboard-linter's rules that apply here; returns the problems found."""
    problems = []
    if not board.get("uid") or board.get("id") is not None:
        problems.append(f"{name}: needs a stable uid and id null")
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{name} / {panel['title']}: datasource is not ${{datasource}}")
        for target in panel["targets"]:
            expr = target["expr"]
            if 'job=~"$job"' not in expr or 'instance=~"$instance"' not in expr:
                problems.append(f"{name} / {panel['title']}: {expr} lacks job/instance matchers")
            for window in re.findall(r"\b(?:rate|irate|increase|deriv|delta)\([^\[]*\[([^\]]*)\]", expr):
                if window != "$__rate_interval":
                    problems.append(f"{name} / {panel['title']}: window [{window}] is not $__rate_interval")
    return problems


def main():
    check = "--check" in sys.argv[1:]
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, board in (("overview", overview()), ("kafka", kafka()), ("amqp", amqp()),
                        ("rocketmq", rocketmq()), ("storage", storage())):
        stale.extend(lint(name, board.json()))
        text = json.dumps(board.json(), indent=2) + "\n"
        path = OUT / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale or failing dashboard-linter rules (fix build.py, then run it):", *stale,
              sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
