"""The OpenAPI 3.1 document of the admin API (src/server/http/admin/openapi.json, served at
/api/openapi.json). Edit this file, then regenerate:

    python3 src/server/http/admin/openapi.py > src/server/http/admin/openapi.json

.ci/admin/suite fails when the two differ.
"""
import json
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
S = lambda **k: dict(k)
string = {"type": "string"}; boolean = {"type": "boolean"}; integer = {"type": "integer"}
obj = {"type": "object"}
args = {"type": "object", "additionalProperties": True}
def o(required, props, extra=True):
    d = {"type": "object", "required": required, "properties": props}
    if not extra: d["additionalProperties"] = False
    return d
schemas = {
 "Error": o(["error","reason"], {"error": string, "reason": string}),
 "Rate": o(["rate"], {"rate": {"type":"number","minimum":0}}),
 "MessageStats": o(["publish","publish_details","deliver_get","deliver_get_details","ack","ack_details","redeliver","redeliver_details"],
   {**{k: {"type":"integer","minimum":0} for k in ["publish","deliver_get","ack","redeliver"]},
    **{f"{k}_details": ref("Rate") for k in ["publish","deliver_get","ack","redeliver"]}}),
 "Queue": o(["name","vhost","type","durable","auto_delete","exclusive","arguments","state","node","consumers","messages","messages_ready","messages_unacknowledged","message_bytes_ready","message_stats"],
   {"name": string, "vhost": string, "type": {"type":"string","enum":["classic","quorum","stream"]}, "durable": boolean, "auto_delete": boolean, "exclusive": boolean,
    "arguments": args, "state": string, "node": string, "consumers": {"type":"integer","minimum":0}, "messages": {"type":"integer","minimum":0},
    "messages_ready": {"type":"integer","minimum":0}, "messages_unacknowledged": {"type":"integer","minimum":0}, "message_bytes_ready": {"type":"integer","minimum":0},
    "message_stats": {**ref("MessageStats"), "description": "counts since the queue was declared in this process; rates per second over the broker's last readings a second or more apart"}}),
 "QueueDeclare": {"type":"object","properties":{"durable": boolean, "auto_delete": boolean, "arguments": args}},
 "Exchange": o(["name","vhost","type","durable","auto_delete","internal","arguments"],
   {"name": string, "vhost": string, "type": {"type":"string","enum":["direct","fanout","topic","headers"]}, "durable": boolean, "auto_delete": boolean, "internal": boolean, "arguments": args, "user_who_performed_action": string}),
 "ExchangeDeclare": o(["type"], {"type": {"type":"string","enum":["direct","fanout","topic","headers"]}, "durable": boolean, "auto_delete": boolean, "internal": boolean, "arguments": args}),
 "Binding": o(["source","vhost","destination","destination_type","routing_key","arguments","properties_key"],
   {"source": string, "vhost": string, "destination": string, "destination_type": {"type":"string","enum":["queue","exchange"]}, "routing_key": string, "arguments": args, "properties_key": string}),
 "BindingCreate": {"type":"object","properties":{"routing_key": string, "arguments": args}},
 "Connection": o(["name","node","type","protocol","state","user","vhost","channels","peer_host","peer_port","connected_at","client_id","tributary_listener"],
   {"name": {"type":"string","description":"an AMQP connection's id in decimal; for the others RabbitMQ's `peer -> local`"}, "node": string, "type": string,
    "protocol": {"type":"string","enum":["AMQP 0-9-1","Kafka","RocketMQ remoting"]}, "state": string,
    "user": {"type":"string","description":"empty for Kafka and RocketMQ"}, "vhost": {"type":"string","description":"empty for Kafka and RocketMQ"},
    "channels": {"type":"integer","minimum":0}, "channel_max": {"type":"integer","minimum":0},
    "peer_host": string, "peer_port": {"type":"integer","minimum":0,"maximum":65535}, "host": string, "port": {"type":"integer","minimum":0,"maximum":65535},
    "connected_at": integer, "auth_mechanism": string, "client_properties": obj,
    "client_id": {"type":["string","null"],"maxLength":128,"description":"Kafka client.id or RocketMQ clientID (cut to 128 characters); null for AMQP"},
    "tributary_listener": {"type":"string","enum":["amqp","kafka","rocketmq-broker","rocketmq-namesrv"]}}),
 "Vhost": o(["name"], {"name": string, "description": string, "tags": {"type":"array","items":string}, "default_queue_type": string, "metadata": obj, "tracing": boolean}),
 "User": o(["name","tags"], {"name": string, "password_hash": string, "hashing_algorithm": string, "tags": {"type":"array","items":string}, "limits": obj}),
 "UserPut": {"type":"object","description":"`password`, or `password_hash` with `hashing_algorithm` `tributary_scram_v1` (as exported).",
   "properties":{"password": string, "password_hash": string, "hashing_algorithm": string, "tags": {"oneOf":[string, {"type":"array","items":string}]}}},
 "Permission": o(["user","vhost","configure","write","read"], {"user": string, "vhost": string, "configure": string, "write": string, "read": string}),
 "PermissionPut": o(["configure","write","read"], {"configure": string, "write": string, "read": string}),
 "Whoami": o(["name","tags"], {"name": string, "tags": {"type":"array","items":string}}),
 "Overview": o(["product_name","product_version","rabbitmq_version","node","cluster_name","queue_totals","object_totals","listeners"],
   {"product_name": string, "product_version": string, "rabbitmq_version": string, "management_version": string, "node": string, "cluster_name": string,
    "erlang_version": string, "erlang_full_version": string, "statistics_db_event_queue": integer, "churn_rates": obj, "message_stats": obj,
    "queue_totals": o(["messages","messages_ready","messages_unacknowledged"], {"messages": integer, "messages_ready": integer, "messages_unacknowledged": integer}),
    "object_totals": o(["connections","channels","queues","exchanges","consumers"], {k: integer for k in ["connections","channels","queues","exchanges","consumers"]}),
    "listeners": {"type":"array","items": o(["node","protocol","ip_address","port"], {"node": string, "protocol": string, "ip_address": string, "port": integer})},
    "tributary": o(["topics","groups"], {"topics": integer, "groups": integer})}),
 "Definitions": {"type":"object","description":"RabbitMQ's definitions format plus `topics` (name, partitions, settings).",
   "properties": {k: {"type":"array","items": obj} for k in ["users","vhosts","permissions","topic_permissions","parameters","global_parameters","policies","queues","exchanges","bindings","topics"]}},
 "TopicSettings": {"type":"object","properties":{"retention_ms": {"type":["integer","null"]}, "retention_bytes": {"type":["integer","null"]}, "segment_bytes": {"type":["integer","null"],"minimum":0},
    "segment_ms": {"type":["integer","null"],"minimum":0}, "max_message_bytes": {"type":["integer","null"],"minimum":0,"maximum":4294967295}, "durability": {"type":["string","null"],"description":"always, never or interval:<ms>"}}},
 "PartitionOffsets": o(["partition","log_start_offset","high_watermark","messages"], {"partition": integer, "log_start_offset": integer, "high_watermark": integer, "messages": integer, "bytes": {"type":["integer","null"]}}),
 "Topic": o(["name","id","partitions","internal","settings","overridden","messages","bytes"],
   {"name": string, "id": string, "partitions": integer, "internal": boolean, "fixed_by": {"type":["string","null"]},
    "settings": obj, "overridden": ref("TopicSettings"), "messages": integer, "bytes": integer,
    "partition_offsets": {"type":"array","items": ref("PartitionOffsets")}}),
 "TopicCreate": o(["name"], {"name": string, "partitions": {"type":"integer","minimum":1}, "settings": ref("TopicSettings")}),
 "TopicChange": {"type":"object","properties":{"partitions": {"type":"integer","minimum":1}, "settings": ref("TopicSettings")}},
 "GroupOffset": o(["topic","partition","committed_offset","high_watermark","lag"], {"topic": string, "partition": integer, "committed_offset": integer,
    "high_watermark": {"type":["integer","null"]}, "lag": {"type":["integer","null"]}, "metadata": string, "commit_time": integer}),
 "GroupMember": o(["member_id","client_id","protocol"], {"member_id": string, "client_id": string, "instance_id": {"type":["string","null"]},
    "protocol": {"type":"string","enum":["Kafka","RocketMQ"],"description":"Kafka: the coordinator's member; RocketMQ: a live client from its heartbeats"}}),
 "Group": o(["name","lag","offsets","members"], {"name": string, "lag": integer, "offsets": {"type":"array","items": ref("GroupOffset")},
    "state": {"type":["string","null"], "description": "the Kafka coordinator's state; null when it does not know the group"},
    "protocol_type": {"type":["string","null"]}, "members": {"type":"array","items": ref("GroupMember")}}),
 "GroupAfterReset": {"allOf": [ref("Group"), o(["reset"], {"reset": o(["notified_members","not_notified_members"],
    {"notified_members": {"type":"integer","minimum":0}, "not_notified_members": {"type":"integer","minimum":0}})})]},
 "GroupReset": o(["topic","to"], {"topic": string, "to": {"oneOf":[{"type":"string","enum":["earliest","latest"]}, {"type":"integer"}]}, "partitions": {"type":"array","items":{"type":"integer","minimum":0}}}),
}
def p(name, desc): return {"name": name, "in": "path", "required": True, "schema": string, "description": desc}
V = p("vhost", "vhost name, percent-encoded (`%2F` is `/`)")
N = lambda what: p("name", what)
def resp(code, schema=None, desc=None):
    r = {"description": desc or {200:"OK",201:"Created",204:"Done"}.get(code,"")}
    if schema: r["content"] = {"application/json": {"schema": schema}}
    return r
ERR = {"content": {"application/json": {"schema": ref("Error")}}}
def errors(*codes):
    d = {}
    names = {400:"Bad request",401:"Missing or wrong credentials",403:"Not an administrator",404:"Not found",405:"Method not allowed",409:"Exists",413:"Body over http.max_body_bytes",503:"Shutting down"}
    for c in (401,403)+codes:
        d[str(c)] = dict(description=names[c], **ERR)
    return d
def op(summary, ok, *err, body=None, tag="rabbitmq"):
    r = {"summary": summary, "tags": [tag], "responses": {}}
    for code, schema in ok: r["responses"][str(code)] = resp(code, schema)
    r["responses"].update(errors(*err))
    if body is not None:
        r["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
        r["responses"]["413"] = dict(description="Body over http.max_body_bytes", **ERR)
        if "400" not in r["responses"]: r["responses"]["400"] = dict(description="Bad request", **ERR)
    return r
arr = lambda n: {"type":"array","items": ref(n)}
paths = {
 "/api/overview": {"get": op("Broker overview", [(200, ref("Overview"))], 503)},
 "/api/whoami": {"get": op("The authenticated user", [(200, ref("Whoami"))])},
 "/api/vhosts": {"get": op("List vhosts", [(200, arr("Vhost"))])},
 "/api/vhosts/{vhost}": {"parameters": [V],
   "get": op("Show a vhost", [(200, ref("Vhost"))], 400, 404),
   "put": op("Create a vhost", [(201,None),(204,None)], 400, body=obj),
   "delete": op("Delete a vhost with its definitions and messages; its connections close", [(204,None)], 400, 404)},
 "/api/vhosts/{vhost}/permissions": {"parameters": [V], "get": op("Permissions on a vhost", [(200, arr("Permission"))], 400)},
 "/api/users": {"get": op("List users", [(200, arr("User"))])},
 "/api/users/{user}": {"parameters": [p("user","user name")],
   "get": op("Show a user", [(200, ref("User"))], 400, 404),
   "put": op("Create or replace a user", [(201,None),(204,None)], 400, body=ref("UserPut")),
   "delete": op("Delete a user; its AMQP connections close", [(204,None)], 400, 404)},
 "/api/users/{user}/permissions": {"parameters": [p("user","user name")], "get": op("A user's permissions", [(200, arr("Permission"))], 400)},
 "/api/permissions": {"get": op("List permissions", [(200, arr("Permission"))])},
 "/api/permissions/{vhost}/{user}": {"parameters": [V, p("user","user name")],
   "get": op("Show permissions", [(200, ref("Permission"))], 400, 404),
   "put": op("Set permissions (apply to open connections at once)", [(201,None),(204,None)], 400, 404, body=ref("PermissionPut")),
   "delete": op("Clear permissions (open connections are refused from their next method)", [(204,None)], 400, 404)},
 "/api/exchanges": {"get": op("List exchanges", [(200, arr("Exchange"))], 404)},
 "/api/exchanges/{vhost}": {"parameters": [V], "get": op("Exchanges of a vhost", [(200, arr("Exchange"))], 400, 404)},
 "/api/exchanges/{vhost}/{name}": {"parameters": [V, N("exchange name")],
   "get": op("Show an exchange", [(200, ref("Exchange"))], 400, 404),
   "put": op("Declare an exchange", [(201,None),(204,None)], 400, 404, body=ref("ExchangeDeclare")),
   "delete": op("Delete an exchange", [(204,None)], 400, 404)},
 "/api/queues": {"get": op("List queues", [(200, arr("Queue"))], 404)},
 "/api/queues/{vhost}": {"parameters": [V], "get": op("Queues of a vhost (Celery Flower's call)", [(200, arr("Queue"))], 400, 404)},
 "/api/queues/{vhost}/{name}": {"parameters": [V, N("queue name")],
   "get": op("Show a queue (KEDA's call)", [(200, ref("Queue"))], 400, 404),
   "put": op("Declare a queue", [(201,None),(204,None)], 400, 404, body=ref("QueueDeclare")),
   "delete": op("Delete a queue and its messages (refused while it has consumers)", [(204,None)], 400, 404)},
 "/api/queues/{vhost}/{name}/contents": {"parameters": [V, N("queue name")], "delete": op("Purge a queue", [(204,None)], 400, 404)},
 "/api/queues/{vhost}/{name}/bindings": {"parameters": [V, N("queue name")], "get": op("Bindings to a queue", [(200, arr("Binding"))], 400, 404)},
 "/api/bindings": {"get": op("List bindings", [(200, arr("Binding"))], 404)},
 "/api/bindings/{vhost}": {"parameters": [V], "get": op("Bindings of a vhost", [(200, arr("Binding"))], 400, 404)},
}
for letter, what in (("q","queue"),("e","exchange")):
    base = [V, p("source","source exchange"), p("destination", f"destination {what}")]
    paths[f"/api/bindings/{{vhost}}/e/{{source}}/{letter}/{{destination}}"] = {"parameters": base,
      "get": op(f"Bindings from an exchange to a {what}", [(200, arr("Binding"))], 400, 404),
      "post": op(f"Bind a {what} to an exchange", [(201,None)], 400, 404, body=ref("BindingCreate"))}
    paths[f"/api/bindings/{{vhost}}/e/{{source}}/{letter}/{{destination}}/{{props}}"] = {"parameters": base + [p("props","the binding's properties_key")],
      "delete": op(f"Unbind a {what}", [(204,None)], 400, 404)}
paths.update({
 "/api/connections": {"get": op("List the connections of every protocol (AMQP, Kafka, RocketMQ)", [(200, arr("Connection"))], 404)},
 "/api/connections/{name}": {"parameters": [N("connection name")],
   "get": op("Show a connection", [(200, ref("Connection"))], 400, 404),
   "delete": op("Close a connection (AMQP: 320 CONNECTION_FORCED; Kafka, RocketMQ: the socket closes after the request in flight)", [(204,None)], 400, 404)},
 "/api/definitions": {"get": op("Export definitions", [(200, ref("Definitions"))]),
   "post": op("Import definitions (400 naming each policy, parameter or topic permission: Tributary applies none, and imports nothing then)", [(204,None)], 400, 404, 409, body=ref("Definitions"))},
 "/api/definitions/{vhost}": {"parameters": [V],
   "get": op("Export one vhost's exchanges, queues and bindings", [(200, ref("Definitions"))], 400, 404),
   "post": op("Import into one vhost", [(204,None)], 400, 404, body=ref("Definitions"))},
 "/api/topics": {"get": {**op("List topics", [(200, arr("Topic"))], tag="tributary"), "parameters": [{"name":"internal","in":"query","required":False,"schema":{"type":"string","enum":["true","false"]}}]},
   "post": op("Create a topic", [(201, ref("Topic"))], 400, 409, body=ref("TopicCreate"), tag="tributary")},
 "/api/topics/{topic}": {"parameters": [p("topic","topic name")],
   "get": op("Describe a topic with its partitions", [(200, ref("Topic"))], 400, 404, tag="tributary"),
   "put": op("Grow partitions and/or replace settings", [(200, ref("Topic"))], 400, 404, body=ref("TopicChange"), tag="tributary"),
   "delete": op("Delete a topic with its data", [(204,None)], 400, 404, tag="tributary")},
 "/api/groups": {"get": op("List consumer groups (Kafka and RocketMQ share offsets)", [(200, arr("Group"))], tag="tributary")},
 "/api/groups/{group}": {"parameters": [p("group","group name")],
   "get": op("Committed offsets and lag of a group", [(200, ref("Group"))], 400, 404, tag="tributary"),
   "delete": op("Delete a group's committed offsets (409 while it has Kafka members)", [(204,None)], 400, 404, 409, tag="tributary")},
 "/api/groups/{group}/reset": {"parameters": [p("group","group name")],
   "post": op("Reset a group's offsets on a topic (409 while it has Kafka members; live RocketMQ members are told to follow)", [(200, ref("GroupAfterReset"))], 400, 404, 409, body=ref("GroupReset"), tag="tributary")},
})
doc = {"openapi": "3.1.0",
 "info": {"title": "Tributary admin API", "version": "0.1.0",
   "description": "Live administration of a Tributary broker. RabbitMQ management API paths and JSON shapes for AMQP (vhosts, users, permissions, exchanges, queues, bindings, connections of every protocol, definitions), and Tributary's topics and consumer groups. HTTP basic authentication with a broker user that has the `administrator` tag."},
 "servers": [{"url": "/"}],
 "security": [{"basic": []}],
 "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}, "schemas": schemas},
 "paths": paths}
# operationId: method and path, e.g. `delete_users_user` (schemathesis filters by it).
import re
for path, item in paths.items():
    for method, operation in item.items():
        if method in ("get", "put", "post", "delete"):
            words = re.sub(r"[{}]", "", path.removeprefix("/api/")).replace("/", "_").replace(".", "_")
            operation["operationId"] = f"{method}_{words}"
doc["paths"]["/api/openapi.json"] = {"get": {"summary": "This document", "tags": ["tributary"], "security": [], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": obj}}}}}}
print(json.dumps(doc, indent=1))
