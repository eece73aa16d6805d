// Tributary console: a single page over the admin API (/api). No framework, no CDN.
// Credentials stay in this tab's sessionStorage and go out as HTTP basic authentication.
// Rates are computed here from two successive polls of the API's counters.
"use strict";

const POLL_MS = 2000;
const state = { auth: sessionStorage.getItem("tributary.auth"), page: "overview", previous: {}, timer: null };

const $ = (selector) => document.querySelector(selector);
const enc = encodeURIComponent;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function button(label, onClick, className) {
  const b = document.createElement("button");
  b.textContent = label;
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function fill(tableId, rows) {
  const body = $(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

async function api(method, path, body) {
  const response = await fetch(`/api/${path}`, {
    method,
    headers: { Authorization: `Basic ${state.auth}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut("The broker refused these credentials.");
    throw new Error("unauthorised");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(data && data.reason ? data.reason : `HTTP ${response.status}`);
  return data;
}

// Messages per second of `key` since the last poll (null on the first one).
function rate(key, value) {
  const now = Date.now();
  const before = state.previous[key];
  state.previous[key] = { value, at: now };
  if (!before || now === before.at) return null;
  return Math.max(0, (value - before.value) * 1000 / (now - before.at));
}

function shownRate(value) {
  return value === null ? "…" : value.toFixed(1);
}

async function showOverview() {
  const o = await api("GET", "overview");
  const topics = await api("GET", "topics");
  const appended = topics.reduce((sum, t) => sum + t.messages, 0);
  const cards = [
    ["Kafka & RocketMQ (log)", [["Topics", o.tributary.topics], ["Records", appended],
      ["Append rate (msg/s)", shownRate(rate("overview.records", appended))], ["Consumer groups", o.tributary.groups]]],
    ["AMQP 0-9-1", [["Channels", o.object_totals.channels],
      ["Queues", o.object_totals.queues], ["Ready", o.queue_totals.messages_ready],
      ["Unacked", o.queue_totals.messages_unacknowledged], ["Consumers", o.object_totals.consumers]]],
    ["Broker", [["Product", `${o.product_name} ${o.product_version}`], ["Node", o.node],
      ["Connections (all protocols)", o.object_totals.connections]]],
  ];
  $("#protocols").replaceChildren(...cards.map(([title, rows]) => {
    const card = document.createElement("div");
    card.className = "card";
    const h = document.createElement("h3");
    h.textContent = title;
    const dl = document.createElement("dl");
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dl.append(dt, dd);
    }
    card.append(h, dl);
    return card;
  }));
  fill("listeners", o.listeners.map((l) => [cell(l.protocol), cell(`${l.ip_address}:${l.port}`)]));
}

async function showTopics() {
  const topics = await api("GET", "topics");
  const detailed = await Promise.all(topics.map((t) => api("GET", `topics/${enc(t.name)}`)));
  fill("topics", detailed.map((t) => [
    cell(t.name), cell(t.partitions, "num"), cell(t.messages, "num"), cell(t.bytes, "num"),
    cell(shownRate(rate(`topic.${t.name}`, t.partition_offsets.reduce((s, p) => s + p.high_watermark, 0))), "num rate"),
    cell(t.partition_offsets.map((p) => `${p.partition}: ${p.log_start_offset}..${p.high_watermark}`).join(", ")),
    (() => { const td = cell(""); td.append(button("Delete", () => act("DELETE", `topics/${enc(t.name)}`), "danger")); return td; })(),
  ]));
}

async function showQueues() {
  const queues = await api("GET", "queues");
  fill("queues", queues.map((q) => {
    const actions = cell("");
    actions.append(
      button("Purge", () => act("DELETE", `queues/${enc(q.vhost)}/${enc(q.name)}/contents`)),
      button("Delete", () => act("DELETE", `queues/${enc(q.vhost)}/${enc(q.name)}`), "danger"));
    return [cell(q.vhost), cell(q.name), cell(q.type), cell(q.messages_ready, "num"),
      cell(q.messages_unacknowledged, "num"), cell(q.consumers, "num"),
      // The broker's own rates (message_stats), over its last readings a second or more apart.
      ...["publish", "deliver_get", "ack"].map((what) =>
        cell(q.message_stats[`${what}_details`].rate.toFixed(1), "num rate")),
      actions];
  }));
}

async function showGroups() {
  const groups = await api("GET", "groups");
  fill("groups", groups.map((g) => [cell(g.name), cell(g.state || "—"),
    cell(g.members.map((m) => m.client_id).join(", ")), cell(g.lag, "num"),
    cell(g.offsets.map((o) => `${o.topic}[${o.partition}] ${o.committed_offset}/${o.high_watermark}`).join(", "))]));
}

async function showConnections() {
  const connections = await api("GET", "connections");
  fill("connections", connections.map((c) => {
    const actions = cell("");
    actions.append(button("Close", () => act("DELETE", `connections/${enc(c.name)}`), "danger"));
    return [cell(c.name), cell(c.protocol), cell(c.client_id || "—"), cell(c.user || "—"), cell(c.vhost || "—"),
      cell(`${c.peer_host}:${c.peer_port}`), cell(c.channels, "num"), actions];
  }));
}

async function showAccess() {
  const [users, vhosts, permissions] = await Promise.all([api("GET", "users"), api("GET", "vhosts"), api("GET", "permissions")]);
  fill("users", users.map((u) => [cell(u.name), cell(u.tags.join(", "))]));
  fill("vhosts", vhosts.map((v) => [cell(v.name)]));
  fill("permissions", permissions.map((p) => [cell(p.vhost), cell(p.user), cell(p.configure), cell(p.write), cell(p.read)]));
}

const pages = { overview: showOverview, topics: showTopics, queues: showQueues, groups: showGroups,
  connections: showConnections, access: showAccess };

async function refresh() {
  if (!state.auth) return;
  try {
    await pages[state.page]();
    $("#status").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("#status").textContent = `Update failed: ${error.message}`;
  }
}

async function act(method, path, body) {
  try {
    await api(method, path, body);
  } catch (error) {
    $("#status").textContent = `${method} failed: ${error.message}`;
  }
  await refresh();
}

function show(page) {
  state.page = page;
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${page}`;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.page === page);
  refresh();
}

function signIn() {
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
  show(state.page);
}

function signOut(message) {
  state.auth = null;
  sessionStorage.removeItem("tributary.auth");
  clearInterval(state.timer);
  $("#login").hidden = false;
  $("#tabs").hidden = true;
  for (const section of document.querySelectorAll(".page")) section.hidden = true;
  $("#login-error").textContent = message || "";
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = $("#login-user").value;
  state.auth = btoa(unescape(encodeURIComponent(`${user}:${$("#login-password").value}`)));
  try {
    const me = await api("GET", "whoami");
    sessionStorage.setItem("tributary.auth", state.auth);
    $("#who").textContent = me.name;
    signIn();
  } catch (error) {
    if (state.auth) signOut(error.message);
  }
});

$("#topic-create").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("#topic-name").value;
  act("POST", "topics", { name, partitions: Number($("#topic-partitions").value) || 1 });
  $("#topic-name").value = "";
});

$("#queue-create").addEventListener("submit", (event) => {
  event.preventDefault();
  const vhost = $("#queue-vhost").value || "/";
  const name = $("#queue-name").value;
  act("PUT", `queues/${enc(vhost)}/${enc(name)}`, { durable: true, arguments: { "x-queue-type": $("#queue-type").value } });
  $("#queue-name").value = "";
});

for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.page));
if (state.auth) signIn();
