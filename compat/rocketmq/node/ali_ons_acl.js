'use strict';
// ali-ons 3.12 against a broker with `rocketmq.acl_enabled`: the `acl` table of ../run, the plan
// of ../python_rocketmq_acl.py. ali-ons signs every request when it has `accessKeyId` and
// `accessKeySecret` (lib/channel.js `beforeRequest`: HMAC-SHA1 over the values of the header
// fields plus `AccessKey` and `OnsChannel` = ALIYUN, sorted by name, then the body, base64) and
// sends no credential fields at all without them.
//
//   signed-send       the user (added with --rocketmq-secret, permissions on its names) sends
//                     SENT messages: every result SEND_OK
//   signed-consume    a push consumer of its group with the same credentials receives exactly them
//   unsigned-send     a producer without credentials is refused: its send fails with the
//                     broker's NO_PERMISSION (16) remark
//   wrong-secret      a producer signing as the user with a wrong secret is refused the same way
//   unsigned-consume  a consumer without credentials, in a new group of the topic, gets none of
//                     the messages within UNSIGNED_WAIT_S (its heartbeats and pulls are refused)
//
// One `RESULT ali-ons <scenario> PASS|FAIL <detail>` line each; a scenario after a failed one is
// reported FAIL ("skipped: ..."). Every wait has a deadline.

const { parseArgs } = require('node:util');
const { Producer, Consumer, Message } = require('ali-ons');

const CLIENT = 'ali-ons';
const SENT = 10;
const CONSUME_TIMEOUT_S = 60;
// A consumer that would be served gets messages within a rebalance (ali-ons: up to 10 s) and a
// pull; twice that without any shows it is refused.
const UNSIGNED_WAIT_S = 20;
const STEP_TIMEOUT_S = 45;

const { values: args } = parseArgs({
  options: {
    namesrv: { type: 'string' },
    topic: { type: 'string' },
    group: { type: 'string' },
    'access-key': { type: 'string' },
    'secret-key': { type: 'string' },
  },
});
for (const name of ['namesrv', 'topic', 'group', 'access-key', 'secret-key']) {
  if (!args[name]) throw new Error(`--${name} is required`);
}
// See ali_ons_client.js: ali-ons insists on an HTTP client it does not use with `nameSrv`.
const httpclient = {
  request() {
    throw new Error('no HTTP name server lookup: nameSrv is set');
  },
};
const credentials = (secret) => ({ accessKeyId: args['access-key'], accessKeySecret: secret });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function deadline(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${seconds}s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Errors of a client's background work (route updates, heartbeats), for the scenario's detail;
// ali-ons emits them as 'error' events, which crash the process when nobody listens.
const backgroundErrors = [];

function producer(auth, name) {
  const client = new Producer({ nameSrv: args.namesrv, httpclient, ...auth, producerGroup: `${args.group}-${name}`,
    instanceName: `${name}-${process.pid}`, sendMsgTimeout: 5000, retryTimesWhenSendFailed: 0 });
  client.on('error', (err) => backgroundErrors.push(err));
  return client;
}

async function startConsumer(auth, group, name) {
  const received = [];
  const errors = [];
  const consumer = new Consumer({ nameSrv: args.namesrv, httpclient, ...auth, consumerGroup: group,
    instanceName: `${name}-${process.pid}` });
  consumer.on('error', (err) => errors.push(err));
  consumer.subscribe(args.topic, '*', async (msg) => {
    received.push(Buffer.from(msg.body).toString());
  });
  await deadline(consumer.ready(), STEP_TIMEOUT_S, `${name} consumer ready`);
  return { consumer, received, errors };
}

// The broker's NO_PERMISSION answers ali-ons saw for a send expected to be refused: ali-ons
// folds a send's NO_PERMISSION into "Send [n] times, still failed" (lib/producer/mq_producer.js),
// so the answers are taken where they arise, from its per-attempt `sendKernelImpl`, its route
// lookups' errors and the error it throws. Fails if the send was accepted.
const NO_PERMISSION = 16;
async function refusedSend(auth, name) {
  const client = producer(auth, name);
  const seen = [];
  const attempt = client.sendKernelImpl.bind(client);
  client.sendKernelImpl = async (...argv) => {
    try {
      return await attempt(...argv);
    } catch (err) {
      seen.push(err);
      throw err;
    }
  };
  const before = backgroundErrors.length;
  try {
    await deadline(client.ready(), STEP_TIMEOUT_S, `${name} producer ready`);
    const result = await deadline(client.send(new Message(args.topic, 'TagA', Buffer.from(`${name} send`))),
      STEP_TIMEOUT_S, `${name} send`);
    throw new Error(`accepted: ${result.sendStatus}`);
  } catch (err) {
    if (err.message.startsWith('accepted')) throw err;
    seen.push(err, ...backgroundErrors.slice(before));
    const refusals = seen.filter((e) => e.code === NO_PERMISSION);
    if (!refusals.length) {
      throw new Error(`refused, but not with NO_PERMISSION: ${seen.map((e) => `${e.code}: ${e.message}`).join(' / ')}`);
    }
    return refusals[0];
  } finally {
    await client.close().catch(() => {});
  }
}

async function main() {
  const bodies = Array.from({ length: SENT }, (_, i) => `${CLIENT} acl body ${i}`);
  const signed = credentials(args['secret-key']);

  async function signedSend() {
    const client = producer(signed, 'signed');
    await deadline(client.ready(), STEP_TIMEOUT_S, 'producer ready');
    try {
      for (const body of bodies) {
        const result = await deadline(client.send(new Message(args.topic, 'TagA', Buffer.from(body))),
          STEP_TIMEOUT_S, 'send');
        if (result.sendStatus !== 'SEND_OK') throw new Error(`send: ${JSON.stringify(result)}`);
      }
    } finally {
      await client.close();
    }
    return `${SENT} signed sends SEND_OK`;
  }

  async function signedConsume() {
    const { consumer, received, errors } = await startConsumer(signed, args.group, 'signed');
    const until = Date.now() + CONSUME_TIMEOUT_S * 1000;
    try {
      while (received.length < SENT && Date.now() < until) await sleep(100);
      await sleep(2000); // duplicates would show
    } finally {
      await consumer.close();
    }
    const unique = new Set(received);
    if (received.length !== SENT || bodies.some((b) => !unique.has(b))) {
      throw new Error(`expected the ${SENT} bodies once each, got ${received.length} ` +
        `(${unique.size} distinct); client errors: ${errors.map((e) => e.message).join(' / ').slice(0, 200)}`);
    }
    return `received the ${SENT} bodies once each`;
  }

  async function unsignedSend() {
    const err = await refusedSend({}, 'unsigned');
    if (!err.message.includes('No accessKey')) throw new Error(`NO_PERMISSION, but: ${err.message}`);
    return `NO_PERMISSION (16): ${err.message.slice(0, 100)}`;
  }

  async function wrongSecret() {
    const err = await refusedSend(credentials('not-the-secret'), 'wrong');
    if (!err.message.includes('Check signature failed')) throw new Error(`NO_PERMISSION, but: ${err.message}`);
    return `NO_PERMISSION (16): ${err.message.slice(0, 100)}`;
  }

  async function unsignedConsume() {
    let started;
    try {
      started = await startConsumer({}, `${args.group}-unsigned`, 'unsigned');
    } catch (err) {
      return `consumer refused at start: ${err.message.slice(0, 100)}`;
    }
    const { consumer, received, errors } = started;
    try {
      await sleep(UNSIGNED_WAIT_S * 1000);
    } finally {
      await consumer.close().catch(() => {});
    }
    if (received.length) throw new Error(`an unsigned consumer received ${received.length} messages`);
    return `nothing within ${UNSIGNED_WAIT_S}s (${errors.length} client errors)`;
  }

  const plan = [
    ['signed-send', signedSend],
    ['signed-consume', signedConsume],
    ['unsigned-send', unsignedSend],
    ['wrong-secret', wrongSecret],
    ['unsigned-consume', unsignedConsume],
  ];
  let failed = null;
  for (const [scenario, run] of plan) {
    if (failed) {
      console.log(`RESULT ${CLIENT} ${scenario} FAIL skipped: ${failed} failed`);
      continue;
    }
    try {
      console.log(`RESULT ${CLIENT} ${scenario} PASS ${await run()}`);
    } catch (err) {
      failed = scenario;
      console.log(`RESULT ${CLIENT} ${scenario} FAIL ${String(err && err.stack || err).replace(/\s+/g, ' ').slice(0, 400)}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
