// @cloudamqp/amqp-client (low-level channel API; it negotiates frame_max 8192, so bodies above
// 8184 bytes must arrive split into several body frames): publish/consume/ack with confirms,
// a 100 KiB body round trip, and basic.get.
import { createRequire } from 'node:module';
import { AMQPClient } from '@cloudamqp/amqp-client';

const require = createRequire(import.meta.url);
const { port, unique, check, within, scenario, finish } = require('./compat.js');

const url = `amqp://guest:guest@127.0.0.1:${port}/`;

async function withChannel(fn) {
  const client = new AMQPClient(url);
  const connection = await client.connect();
  try {
    return await fn(await connection.channel());
  } finally {
    await connection.close();
  }
}

async function publishConsumeAck() {
  return withChannel(async (channel) => {
    const queue = unique('cloudamqp.q');
    await channel.queueDeclare(queue, { autoDelete: true });
    await channel.confirmSelect();
    for (let i = 0; i < 20; i += 1) {
      await channel.basicPublish('', queue, `c${i}`, { contentType: 'text/plain', headers: { i } });
    }
    const got = [];
    let done;
    const all = new Promise((resolve) => { done = resolve; });
    await channel.basicQos(5);
    const consumer = await channel.basicConsume(queue, { noAck: false }, async (message) => {
      got.push([message.bodyString(), message.properties.headers.i, message.properties.contentType]);
      await message.ack();
      if (got.length === 20) done();
    });
    await within(10000, 'consume 20', all);
    const ok = await channel.queueDeclare(queue, { passive: true });
    check(ok.messageCount === 0, `${ok.messageCount} left after acks`);
    await consumer.cancel();
    check(got.every(([body, i, type], n) => body === `c${n}` && i === n && type === 'text/plain'),
      `got ${JSON.stringify(got.slice(0, 3))}`);
    return '20 confirmed, consumed in order with headers, acked with prefetch 5';
  });
}

async function largeBody() {
  return withChannel(async (channel) => {
    const queue = unique('cloudamqp.large');
    await channel.queueDeclare(queue, { autoDelete: true });
    const body = new Uint8Array(100 * 1024).map((_, i) => i % 251);
    await channel.basicPublish('', queue, body);
    let message = null;
    for (let tries = 0; message === null && tries < 50; tries += 1) {
      message = await channel.basicGet(queue, { noAck: true });
      if (message === null) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    check(message !== null, 'basic.get found nothing');
    check(message.bodySize === body.length, `body size ${message.bodySize}`);
    const same = Buffer.compare(Buffer.from(message.body), Buffer.from(body)) === 0;
    check(same, 'body bytes differ');
    check(message.messageCount === 0, `get-ok message_count ${message.messageCount}`);
    return '100 KiB body intact through frame_max 8192 (13 body frames)';
  });
}

await scenario('publish-consume-ack', publishConsumeAck);
await scenario('large-body-frame-max', largeBody);
finish();
