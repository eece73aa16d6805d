// End-to-end test of the web console in headless Chromium (playwright-core driving the
// system's /usr/bin/chromium): a topic made through Kafka and a queue made through AMQP show
// up, a topic's rate moves while a producer runs, a topic is created and deleted from the
// page, and no page logs a console error. One screenshot per page goes to the artifacts dir.
//
// Usage: node console.test.mjs <http host:port> <kafka host:port> <amqp host:port> <artifacts dir>

import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { Kafka, logLevel } from "kafkajs";
import amqp from "amqplib";

const [http, kafkaAddr, amqpAddr, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const results = [];
async function check(name, body) {
  try {
    await body();
    results.push([name, true]);
    console.log(`ok   ${name}`);
  } catch (error) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${error.stack || error}`);
  }
}
async function until(what, predicate, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const kafka = new Kafka({ clientId: "console-test", brokers: [kafkaAddr], logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic: "console-kafka", numPartitions: 2 }] });
await admin.disconnect();
const producer = kafka.producer();
await producer.connect();
await producer.send({ topic: "console-kafka", messages: [{ value: "first" }] });

const connection = await amqp.connect(`amqp://guest:guest@${amqpAddr}`);
const channel = await connection.createConfirmChannel();
await channel.assertQueue("console-amqp", { durable: true });
for (let n = 0; n < 5; n++) channel.sendToQueue("console-amqp", Buffer.from(`m${n}`));
await channel.waitForConfirms();

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const consoleErrors = [];
page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
page.on("pageerror", (error) => consoleErrors.push(String(error)));
const shot = (name) => page.screenshot({ path: `${artifacts}/console-${name}.png`, fullPage: true });
const rowOf = (table, text) => page.locator(`#${table} tbody tr`, { hasText: text });

await check("signs in and shows the overview of the three protocols", async () => {
  await page.goto(`http://${http}/`);
  await page.fill("#login-password", "guest");
  await page.click("#login-submit");
  await page.locator("#protocols .card").first().waitFor();
  if (await page.locator("#login").isVisible()) throw new Error("the sign-in form is still shown");
  const text = await page.locator("#protocols").innerText();
  for (const expected of ["Kafka & RocketMQ", "AMQP 0-9-1", "Connections"]) {
    if (!text.includes(expected)) throw new Error(`overview lacks ${expected}: ${text}`);
  }
  await shot("overview");
});

await check("shows the topic made through Kafka with its partitions", async () => {
  await page.click("#tabs button[data-page=topics]");
  await rowOf("topics", "console-kafka").waitFor();
  const row = await rowOf("topics", "console-kafka").innerText();
  if (!row.includes("0: 0..") || !row.includes("1: 0..")) throw new Error(`no partition offsets: ${row}`);
});

await check("a topic's rate moves while a producer runs", async () => {
  let producing = true;
  const loop = (async () => {
    while (producing) {
      await producer.send({ topic: "console-kafka", messages: Array.from({ length: 20 }, (_, i) => ({ value: `v${i}` })) });
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    await until("a non-zero rate", async () => {
      const rate = await rowOf("topics", "console-kafka").locator("td.rate").innerText();
      return Number(rate) > 0;
    });
    await shot("topics");
  } finally {
    producing = false;
    await loop;
  }
});

await check("creates and deletes a topic from the page", async () => {
  await page.fill("#topic-name", "console-ui");
  await page.fill("#topic-partitions", "3");
  await page.click("#topic-create button[type=submit]");
  await rowOf("topics", "console-ui").waitFor();
  await rowOf("topics", "console-ui").getByRole("button", { name: "Delete" }).click();
  await rowOf("topics", "console-ui").waitFor({ state: "detached" });
});

await check("shows the queue made through AMQP with its depth", async () => {
  await page.click("#tabs button[data-page=queues]");
  await rowOf("queues", "console-amqp").waitFor();
  await until("5 ready messages", async () => (await rowOf("queues", "console-amqp").innerText()).includes("\t5\t"));
  await shot("queues");
});

await check("groups, connections, users and vhosts pages load", async () => {
  for (const name of ["groups", "connections", "access"]) {
    await page.click(`#tabs button[data-page=${name}]`);
    await page.locator(`#page-${name} table tbody`).first().waitFor({ state: "attached" });
    await page.waitForTimeout(300);
    await shot(name);
  }
  await rowOf("users", "").count();
  const vhosts = await page.locator("#vhosts tbody").innerText();
  if (!vhosts.includes("/")) throw new Error(`no vhost / listed: ${vhosts}`);
});

await check("no console errors", async () => {
  if (consoleErrors.length) throw new Error(consoleErrors.join("\n"));
});

await browser.close();
await producer.disconnect();
await channel.close();
await connection.close();
const passed = results.filter(([, ok]) => ok).length;
console.log(`console: ${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
