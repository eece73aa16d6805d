// amqplib: a confirm channel (publish, waitForConfirms, consume, ack), the consumer cancel
// notification when a consumed queue is deleted, and server-generated consumer tags.
'use strict';

const amqp = require('amqplib');
const { port, unique, check, within, scenario, finish, brokerMemory } = require('./compat');

const url = `amqp://guest:guest@127.0.0.1:${port}/`;

async function confirmChannel() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const channel = await connection.createConfirmChannel();
    const queue = unique('amqplib.confirm');
    await channel.assertQueue(queue, { autoDelete: true });
    let confirmed = 0;
    for (let i = 0; i < 100; i += 1) {
      channel.sendToQueue(queue, Buffer.from(`n${i}`), { persistent: true }, (err) => {
        if (!err) confirmed += 1;
      });
    }
    await channel.waitForConfirms();
    check(confirmed === 100, `${confirmed} of 100 publishes confirmed`);
    const bodies = [];
    await within(10000, 'consume 100', new Promise((resolve) => {
      channel.prefetch(10);
      channel.consume(queue, (message) => {
        bodies.push(message.content.toString());
        channel.ack(message);
        if (bodies.length === 100) resolve();
      });
    }));
    const expected = Array.from({ length: 100 }, (_, i) => `n${i}`);
    check(JSON.stringify(bodies) === JSON.stringify(expected), `bodies out of order: ${bodies.slice(0, 5)}`);
    const { messageCount } = await channel.checkQueue(queue);
    check(messageCount === 0, `${messageCount} left after acks`);
    return '100 confirmed, consumed in order with prefetch 10, acked';
  } finally {
    await connection.close();
  }
}

async function cancelNotification() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const consuming = await connection.createChannel();
    const admin = await connection.createChannel();
    const queue = unique('amqplib.cancel');
    await admin.assertQueue(queue);
    const cancelled = new Promise((resolve) => {
      consuming.consume(queue, (message) => {
        if (message === null) resolve('cancelled');
      });
    });
    const { consumerTag } = await consuming.consume(queue, () => {});
    check(consumerTag.startsWith('amq.ctag-'), `server-generated tag ${consumerTag}`);
    const { messageCount } = await admin.deleteQueue(queue);
    check(messageCount === 0, `delete-ok message_count ${messageCount}`);
    check(await within(5000, 'basic.cancel from the broker', cancelled) === 'cancelled', 'no cancel');
    // The channel must stay usable after a server-initiated cancel.
    const again = await consuming.assertQueue(unique('amqplib.after'), { autoDelete: true });
    check(again.queue.startsWith('amqplib.after'), 'channel unusable after cancel');
    return `server basic.cancel received; tag ${consumerTag.slice(0, 12)}...`;
  } finally {
    await connection.close();
  }
}

async function missingQueueError() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const channel = await connection.createChannel();
    const closed = new Promise((resolve) => channel.on('error', resolve));
    let code = null;
    try {
      await channel.checkQueue(unique('amqplib.missing'));
    } catch (err) {
      code = err.code;
    }
    check(code === 404, `passive declare of a missing queue gave ${code}`);
    await within(2000, 'channel error event', closed);
    const fresh = await connection.createChannel();
    await fresh.assertQueue('', { exclusive: true });
    return '404 NOT_FOUND closed the channel only; the connection went on';
  } finally {
    await connection.close();
  }
}

async function deadLetterTtl() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const channel = await connection.createChannel();
    const dlx = unique('amqplib.dlx');
    const dead = unique('amqplib.dead');
    const source = unique('amqplib.ttl');
    await channel.assertExchange(dlx, 'fanout', { autoDelete: false });
    await channel.assertQueue(dead, { autoDelete: false });
    await channel.bindQueue(dead, dlx, '');
    await channel.assertQueue(source, {
      autoDelete: false, messageTtl: 100, deadLetterExchange: dlx,
    });
    channel.sendToQueue(source, Buffer.from('expires'), { headers: { mine: 'kept' } });
    let message = false;
    for (let tries = 0; !message && tries < 60; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      message = await channel.get(dead, { noAck: true });
    }
    check(message, 'nothing was dead-lettered within 3 s');
    check(message.content.toString() === 'expires', `body ${message.content}`);
    const { headers } = message.properties;
    check(headers.mine === 'kept', `own header ${headers.mine}`);
    const [death] = headers['x-death'] || [];
    check(death, `x-death missing: ${JSON.stringify(headers)}`);
    check(death.reason === 'expired', `reason ${death.reason}`);
    check(death.queue === source, `queue ${death.queue}`);
    check(death.count === 1, `count ${death.count}`);
    check(death.exchange === '', `exchange '${death.exchange}'`);
    check(JSON.stringify(death['routing-keys']) === JSON.stringify([source]), `routing-keys ${death['routing-keys']}`);
    check(death.time && typeof death.time === 'object', `time ${JSON.stringify(death.time)}`);
    check(headers['x-first-death-reason'] === 'expired', `x-first-death-reason ${headers['x-first-death-reason']}`);
    await channel.deleteQueue(source);
    await channel.deleteQueue(dead);
    await channel.deleteExchange(dlx);
    return 'TTL 100 ms -> DLX; x-death {reason expired, queue, count 1, routing-keys, time}';
  } finally {
    await connection.close();
  }
}

async function exchangeBindingsHeaders() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const channel = await connection.createChannel();
    const front = unique('amqplib.front');
    const headers = unique('amqplib.headers');
    await channel.assertExchange(front, 'topic', { autoDelete: true });
    await channel.assertExchange(headers, 'headers', { autoDelete: true });
    await channel.bindExchange(headers, front, 'jobs.#');
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, headers, '', { 'x-match': 'any', kind: 'pdf', size: 'big' });
    channel.publish(front, 'jobs.render', Buffer.from('a'), { headers: { kind: 'pdf' } });
    channel.publish(front, 'jobs.render', Buffer.from('b'), { headers: { kind: 'png' } });
    channel.publish(front, 'mail.send', Buffer.from('c'), { headers: { kind: 'pdf' } });
    channel.publish(front, 'jobs.x.y', Buffer.from('d'), { headers: { size: 'big' } });
    const got = [];
    await within(5000, 'two routed messages', new Promise((resolve) => {
      channel.consume(queue, (message) => {
        got.push(message.content.toString());
        if (got.length === 2) resolve();
      }, { noAck: true });
    }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    check(JSON.stringify(got) === '["a","d"]', `routed ${JSON.stringify(got)}`);
    await channel.unbindExchange(headers, front, 'jobs.#');
    return 'topic -> headers (x-match any) exchange binding routed 2 of 4';
  } finally {
    await connection.close();
  }
}

// A 15 MiB persistent message (under the 16 MiB `amqp.max_message_bytes` default), confirmed,
// consumed and acked byte for byte.
async function message15MiB() {
  const connection = await amqp.connect(url, { timeout: 5000 });
  try {
    const channel = await connection.createConfirmChannel();
    const queue = unique('amqplib.15mib');
    await channel.assertQueue(queue, { durable: true });
    const body = Buffer.alloc(15 << 20);
    for (let i = 0; i < body.length; i += 1) body[i] = i % 251;
    const memory = brokerMemory();
    channel.sendToQueue(queue, body, { persistent: true });
    await channel.waitForConfirms();
    let consumerTag;
    const got = await within(30000, 'the 15 MiB delivery', new Promise((resolve) => {
      channel.consume(queue, (message) => {
        if (message === null) return; // cancelled by the broker
        channel.ack(message);
        resolve(message.content);
      }).then((ok) => { consumerTag = ok.consumerTag; });
    }));
    check(got.equals(body), `15 MiB body came back as ${got.length} bytes`);
    await channel.cancel(consumerTag);
    await channel.deleteQueue(queue);
    const growth = memory.growth();
    if (growth === null) return '15 MiB persistent message confirmed, consumed intact';
    const ratio = growth / body.length;
    check(ratio < 3, `the broker's peak memory grew ${ratio.toFixed(2)}x the message size`);
    return `15 MiB persistent message confirmed, consumed intact, broker RSS +${ratio.toFixed(2)}x`;
  } finally {
    await connection.close();
  }
}

(async () => {
  await scenario('confirm-channel', confirmChannel);
  await scenario('cancel-notify', cancelNotification);
  await scenario('channel-error', missingQueueError);
  await scenario('dead-letter-ttl', deadLetterTtl);
  await scenario('e2e-headers', exchangeBindingsHeaders);
  await scenario('message-15mib', message15MiB);
  finish();
})();
