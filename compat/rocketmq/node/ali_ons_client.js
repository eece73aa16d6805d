'use strict';
// ali-ons 3.12 (pure-JS RocketMQ remoting client) running the compat/rocketmq scenarios against
// Tributary. The plan is the one of ../python_rocketmq_client.py (send, consume with a tag
// filter, resume from committed offsets, delay level 2, retry after a failed delivery, two
// broadcasting members that each get every message); one `RESULT ali-ons <scenario>
// PASS|FAIL <detail>` line per scenario for ../run. Bodies here are binary (every byte value,
// NULs included) and one is large enough for the client to compress it.

const { parseArgs } = require('node:util');
const { Producer, Consumer, Message } = require('ali-ons');

const CLIENT = 'ali-ons';
const SCENARIOS = ['send', 'consume', 'resume', 'delay', 'retry', 'broadcast'];
const TAGS = ['TagA', 'TagB', 'TagC'];
const SUBSCRIPTION = 'TagA || TagC';
const MATCHING = new Set(['TagA', 'TagC']);
const FIRST_BATCH = 30;
const SECOND_BATCH = 15;
// ../run configures the broker's delay levels so that this level is DELAY_SECONDS long.
const DELAY_LEVEL = 2;
const DELAY_SECONDS = 3;
// A first retry waits delay level 3, 5 s with ../run's levels.
const RETRY_SECONDS = 5;
// ali-ons rebalances every 10 s and long-polls for 15 s: be generous.
const CONSUME_TIMEOUT_S = 60;
// Keep listening this long after the last expected message, so duplicates would still show.
const QUIET_AFTER_S = 3;
const DELAY_LATE_BOUND_S = 30;
// ali-ons compresses bodies from 4 KiB on (sysFlag bit 0); messages 6, 21, 36 (TagA) cross it.
const LARGE_BODY_BYTES = 6000;
// ../run configures the broker's default queue count.
const QUEUES = 4;
const BROADCAST_BATCH = 24;

const { values: args } = parseArgs({
  options: {
    namesrv: { type: 'string' },
    topic: { type: 'string' },
    group: { type: 'string' },
  },
});
for (const name of ['namesrv', 'topic', 'group']) {
  if (!args[name]) throw new Error(`--${name} is required`);
}
// The client wants credentials (the broker ignores them while ACL is off) and an HTTP client,
// which it only uses to look the name server up when `nameSrv` is not given: this one refuses.
// Without an httpclient the constructor's assertion makes ali-ons retry forever (heap exhausted).
const httpclient = {
  request() {
    throw new Error('no HTTP name server lookup: nameSrv is set');
  },
};
const common = { nameSrv: args.namesrv, accessKeyId: 'compat', accessKeySecret: 'compat', httpclient };

function planned(start, count) {
  const batch = [];
  for (let i = start; i < start + count; i++) {
    const head = Buffer.from(`${CLIENT} body ${i} `);
    const tail = i % 15 === 6 ? Buffer.alloc(LARGE_BODY_BYTES, i % 251) : Buffer.alloc(0);
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, b) => (b + i) % 256));
    batch.push({ tag: TAGS[i % TAGS.length], key: `key-${i}`, body: Buffer.concat([head, everyByte, tail]) });
  }
  return batch;
}

const identity = (m) => `${m.tag}|${m.key}|${m.body.toString('hex')}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves when `predicate(received)` holds and `quietS` more passed, or at the deadline.
async function waitFor(received, predicate, timeoutS, quietS = QUIET_AFTER_S) {
  const deadline = Date.now() + timeoutS * 1000;
  let satisfiedAt = null;
  while (Date.now() < deadline) {
    if (satisfiedAt === null && predicate(received)) satisfiedAt = Date.now();
    if (satisfiedAt !== null && Date.now() - satisfiedAt >= quietS * 1000) break;
    await sleep(100);
  }
  return received.slice();
}

async function startConsumer(group, topic, expression, instance, failFirstDelivery = false, isBroadcast = false) {
  const received = [];
  const errors = [];
  const consumer = new Consumer({
    ...common,
    consumerGroup: group,
    // ali-ons's switch for MessageModel.BROADCASTING (offsets kept in memory, not persistent).
    isBroadcast,
    // A distinct instance name makes each consumer its own client, as a new process would be.
    instanceName: `${instance}-${process.pid}`,
  });
  consumer.on('error', (err) => errors.push(err));
  consumer.subscribe(topic, expression, async (msg) => {
    received.push({ at: Date.now(), tag: msg.tags, key: msg.keys, body: Buffer.from(msg.body), id: msg.msgId,
      reconsumeTimes: msg.reconsumeTimes, queueId: msg.queueId });
    // A throwing handler is how ali-ons asks for a later redelivery (it sends the message back).
    if (failFirstDelivery && msg.reconsumeTimes === 0) throw new Error('compat: fail the first delivery');
  });
  await consumer.ready();
  return { consumer, received, errors };
}

function compare(expected, received) {
  const want = new Set(expected.map(identity));
  const seen = received.map(identity);
  const seenSet = new Set(seen);
  const missing = [...want].filter((m) => !seenSet.has(m));
  const unexpected = [...seenSet].filter((m) => !want.has(m));
  const duplicates = seen.length - seenSet.size;
  if (missing.length || unexpected.length || duplicates) {
    const short = (list) => list.slice(0, 2).map((m) => m.slice(0, 60));
    throw new Error(`expected ${expected.length} messages, got ${seen.length}: ${missing.length} missing ` +
      `(e.g. ${short(missing)}), ${unexpected.length} unexpected (e.g. ${short(unexpected)}), ` +
      `${duplicates} duplicates`);
  }
}

async function main() {
  const first = planned(0, FIRST_BATCH);
  const second = planned(FIRST_BATCH, SECOND_BATCH);
  const sentIds = new Map(); // identity -> msgId of the send result

  const producer = new Producer({ ...common, producerGroup: `${args.group}-producer`, sendMsgTimeout: 10000 });
  await producer.ready();

  async function sendOne(topic, { tag, key, body }, delayLevel = 0) {
    const msg = new Message(topic, tag, body);
    msg.keys = [key];
    if (delayLevel) msg.delayTimeLevel = delayLevel;
    const result = await producer.send(msg);
    if (result.sendStatus !== 'SEND_OK' || !result.msgId || !(result.queueOffset >= 0) ||
      result.messageQueue.topic !== topic) {
      throw new Error(`send of ${key}: ${JSON.stringify(result)}`);
    }
    return result;
  }

  async function send(batch) {
    const ids = new Set();
    const queues = new Set();
    for (const m of batch) {
      const result = await sendOne(args.topic, m);
      ids.add(result.msgId);
      queues.add(result.messageQueue.queueId);
      sentIds.set(identity(m), result.msgId);
    }
    if (ids.size !== batch.length) throw new Error(`${batch.length} sends returned ${ids.size} distinct ids`);
    return `${batch.length} sync sends SEND_OK on ${queues.size} queues, distinct ids`;
  }

  async function consume(batch, instance) {
    const expected = batch.filter((m) => MATCHING.has(m.tag));
    const { consumer, received, errors } = await startConsumer(args.group, args.topic, SUBSCRIPTION, instance);
    let got;
    try {
      got = await waitFor(received, (r) => r.length >= expected.length, CONSUME_TIMEOUT_S);
    } finally {
      await consumer.close(); // persists the consumed offsets to the broker
    }
    compare(expected, got);
    const wrongIds = got.filter((m) => m.id !== sentIds.get(identity(m)));
    if (wrongIds.length) throw new Error(`${wrongIds.length} received ids differ from the sent ids`);
    const note = errors.length ? `; client errors: ${errors.map((e) => e.message).join(' / ').slice(0, 120)}` : '';
    return `${got.length} of ${batch.length} matched '${SUBSCRIPTION}', bodies and ids equal${note}`;
  }

  async function delay() {
    const topic = `${args.topic}-delay`;
    const group = `${args.group}-delay`;
    const warmUp = { tag: 'TagW', key: 'warm-up', body: Buffer.from('warm-up') };
    await sendOne(topic, warmUp);
    const { consumer, received } = await startConsumer(group, topic, '*', 'delay');
    let got;
    let sentAt;
    const delayed = { tag: 'TagD', key: 'delayed', body: Buffer.from(`delayed level ${DELAY_LEVEL} \u0000\u00ff`) };
    const immediate = { tag: 'TagI', key: 'immediate', body: Buffer.from('immediate') };
    try {
      got = await waitFor(received, (r) => r.length >= 1, CONSUME_TIMEOUT_S, 0);
      if (got.length !== 1 || identity(got[0]) !== identity(warmUp)) {
        throw new Error(`the warm-up message did not arrive alone: ${got.map(identity)}`);
      }
      sentAt = Date.now();
      await sendOne(topic, delayed, DELAY_LEVEL);
      await sendOne(topic, immediate);
      got = await waitFor(received, (r) => r.length >= 3, DELAY_SECONDS + DELAY_LATE_BOUND_S, 1);
    } finally {
      await consumer.close();
    }
    const arrivals = new Map(got.slice(1).map((m) => [identity(m), (m.at - sentAt) / 1000]));
    if (got.length !== 3 || !arrivals.has(identity(delayed)) || !arrivals.has(identity(immediate))) {
      throw new Error(`expected the delayed and the immediate message once: ${got.map((m) => m.key)}`);
    }
    const immediateS = arrivals.get(identity(immediate));
    const delayedS = arrivals.get(identity(delayed));
    if (immediateS >= DELAY_SECONDS) throw new Error(`the immediate message took ${immediateS}s`);
    if (!(delayedS >= DELAY_SECONDS && delayedS <= DELAY_SECONDS + DELAY_LATE_BOUND_S)) {
      throw new Error(`level ${DELAY_LEVEL} (${DELAY_SECONDS}s) arrived after ${delayedS}s`);
    }
    return `immediate after ${immediateS.toFixed(2)}s, level ${DELAY_LEVEL} (${DELAY_SECONDS}s) after ${delayedS.toFixed(2)}s`;
  }

  async function retry() {
    const topic = `${args.topic}-retry`;
    const message = { tag: 'TagR', key: 'retry-me', body: Buffer.from('retry me \u0000\u2713') };
    await sendOne(topic, message);
    const { consumer, received } = await startConsumer(`${args.group}-retry`, topic, '*', 'retry', true);
    let got;
    try {
      got = await waitFor(received, (r) => r.length >= 2, CONSUME_TIMEOUT_S + RETRY_SECONDS, 2);
    } finally {
      await consumer.close();
    }
    const times = got.map((m) => m.reconsumeTimes);
    if (got.length !== 2 || got.some((m) => identity(m) !== identity(message)) || times.join() !== '0,1') {
      throw new Error(`expected two deliveries (reconsume times 0, 1): ${got.map((m) => m.key)} ${times}`);
    }
    const gap = (got[1].at - got[0].at) / 1000;
    if (!(gap >= RETRY_SECONDS && gap <= RETRY_SECONDS + DELAY_LATE_BOUND_S)) {
      throw new Error(`the retry came ${gap}s after the failed delivery`);
    }
    return `failed once, redelivered after ${gap.toFixed(2)}s with reconsume times 1`;
  }

  // Two BROADCASTING members of one group: a new member starts each queue at its end once its
  // first rebalance ran, so probes go to every queue until both members received one from each;
  // then every message of a batch sent over all queues must reach each member exactly once.
  async function broadcast() {
    const topic = `${args.topic}-broadcast`;
    const group = `${args.group}-broadcast`;
    const members = [];
    let rounds = 0;
    const batch = [];
    const got = [];
    const queuesOf = (received, tag) => new Set(received.filter((m) => m.tag === tag).map((m) => m.queueId));
    try {
      for (const n of [1, 2]) members.push(await startConsumer(group, topic, '*', `broadcast-${n}`, false, true));
      const deadline = Date.now() + CONSUME_TIMEOUT_S * 1000;
      while (!members.every((m) => queuesOf(m.received, 'TagP').size === QUEUES)) {
        if (Date.now() > deadline) {
          throw new Error(`members never received probes from every queue: ${members.map((m) => [...queuesOf(m.received, 'TagP')])}`);
        }
        // ali-ons picks queues round-robin: one round of QUEUES sends covers every queue.
        for (let q = 0; q < QUEUES; q++) {
          await sendOne(topic, { tag: 'TagP', key: `probe-${rounds}-${q}`, body: Buffer.from(`probe ${rounds} ${q}`) });
        }
        rounds++;
        await sleep(300);
      }
      const sentQueues = new Set();
      for (let i = 0; i < BROADCAST_BATCH; i++) {
        const m = { tag: 'TagB', key: `broadcast-${i}`, body: Buffer.from(`${CLIENT} broadcast ${i} \u0000\u00ff`) };
        batch.push(m);
        sentQueues.add((await sendOne(topic, m)).messageQueue.queueId);
      }
      if (sentQueues.size !== QUEUES) throw new Error(`the batch reached only queues ${[...sentQueues]}`);
      for (const m of members) {
        got.push(await waitFor(m.received, (r) => r.filter((x) => x.tag === 'TagB').length >= batch.length, CONSUME_TIMEOUT_S));
      }
    } finally {
      for (const m of members) await m.consumer.close();
    }
    got.forEach((received, n) => {
      try {
        compare(batch, received.filter((m) => m.tag === 'TagB'));
      } catch (err) {
        throw new Error(`member ${n + 1}: ${err.message}`);
      }
    });
    const queues = got.map((r) => [...queuesOf(r, 'TagB')].sort().join(','));
    return `both members got all ${batch.length} messages of queues ${queues.join(' / ')} once (after ${rounds} probe rounds)`;
  }

  const steps = {
    send: () => send(first),
    consume: () => consume(first, 'consume'),
    resume: async () => {
      await send(second);
      return `${await consume(second, 'resume')} (none of the first batch)`;
    },
    delay,
    retry,
    broadcast,
  };
  let failed = null;
  try {
    for (const name of SCENARIOS) {
      if (failed !== null) {
        report(name, false, `skipped: ${failed} failed`);
        continue;
      }
      const started = Date.now();
      try {
        const detail = await steps[name]();
        report(name, true, `${detail} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
      } catch (err) {
        console.error(err);
        report(name, false, `${err.name}: ${err.message}`.replace(/\n/g, ' ').slice(0, 300));
        failed = name;
      }
    }
  } finally {
    await producer.close();
  }
  return failed === null ? 0 : 1;
}

function report(scenario, passed, detail) {
  process.stdout.write(`RESULT ${CLIENT} ${scenario} ${passed ? 'PASS' : 'FAIL'} ${detail}\n`);
}

main().then(
  (code) => process.exit(code), // ali-ons keeps timers alive after close
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
