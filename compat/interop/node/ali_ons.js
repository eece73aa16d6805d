'use strict';
// ali-ons 3.12 (pure-JS RocketMQ client) for the interop runner (../run):
//
//   write --namesrv A --out DIR   sends the RocketMQ source topic (COUNT messages: binary bodies
//                                 with every byte value, tags, keys, user properties) and the
//                                 large-body topic (bodies over 4 KiB, which ali-ons zlib-compresses),
//                                 and records what it sent in DIR/sent-<topic>.json
//   read --namesrv A --out DIR --expect topic=count ...
//                                 a push consumer of a new group per topic, from the first
//                                 offset, dumps what it got to DIR/recv-ali-ons-<topic>.json
//
// A reader stops when every topic has its count and nothing more came for QUIET_S, when nothing
// came for STALL_S, or at DEADLINE_S; ../check.py judges what it got. Bytes are base64.

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { Producer, Consumer, Message } = require('ali-ons');

const COUNT = 200; // plan.COUNT
const TOPIC = 'interop-rocketmq'; // plan.TOPICS.rocketmq
const LARGE_TOPIC = 'interop-large-ali-ons'; // plan.TOPICS['large-ali']
const LARGE_SIZES = [4097, 8192, 20000, 70000];
const QUIET_S = 2;
const STALL_S = 25; // a push consumer's first rebalance and pulls take a few seconds
const DEADLINE_S = 90;

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    namesrv: { type: 'string' },
    out: { type: 'string' },
    expect: { type: 'string', multiple: true, default: [] },
  },
});
const command = positionals[0];
// ali-ons needs credentials (ignored while ACL is off) and an httpclient it only uses when
// `nameSrv` is not given; without one its constructor retries forever (compat/rocketmq/FINDINGS.md).
const httpclient = {
  request() {
    throw new Error('no HTTP name server lookup: nameSrv is set');
  },
};
const common = { nameSrv: args.namesrv, accessKeyId: 'interop', accessKeySecret: 'interop', httpclient };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const indexPrefix = (i) => Buffer.from(`IDX:${String(i).padStart(5, '0')}:`);

function sourceMessages() {
  const messages = [];
  for (let i = 0; i < COUNT; i++) {
    const body = Buffer.concat([indexPrefix(i), Buffer.from(Array.from({ length: 300 + (i % 13) }, (_, j) => (j * 7 + i) % 256))]);
    const keys = i % 10 === 9 ? [`r-key-${i}`, 'second'] : [`r-key-${i}`];
    const properties = { 'trace-id': `r-${i}`, '\u00fcn\u00ef': `v\u00e4lue \u2713 ${i}`, json: `{"a":${i}}` };
    messages.push({ tags: `Tag${i % 3}`, keys, body, properties });
  }
  return messages;
}

function largeMessages() {
  return LARGE_SIZES.map((size, i) => {
    const filler = Buffer.from(Array.from({ length: size }, (_, j) => (j % 64 < 48 ? 97 + (j % 26) : (j * 31 + i) % 256)));
    return { tags: 'TagL', keys: [`large-${i}`], body: Buffer.concat([indexPrefix(i), filler]), properties: { 'trace-id': `large-${i}` } };
  });
}

async function write() {
  const producer = new Producer({ ...common, producerGroup: `interop-ali-producer-${process.pid}`, sendMsgTimeout: 10000 });
  await producer.ready();
  try {
    for (const [topic, messages] of [[TOPIC, sourceMessages()], [LARGE_TOPIC, largeMessages()]]) {
      const sent = [];
      for (const m of messages) {
        const msg = new Message(topic, m.tags, m.body);
        msg.keys = m.keys;
        for (const [name, value] of Object.entries(m.properties)) msg.properties[name] = value;
        const before = Date.now();
        const result = await producer.send(msg);
        const after = Date.now();
        if (result.sendStatus !== 'SEND_OK') throw new Error(`send to ${topic}: ${JSON.stringify(result)}`);
        sent.push({
          body: m.body.toString('base64'),
          tags: m.tags,
          keys: m.keys.join(' '),
          // What went on the wire: the client's property map in its order (TAGS, KEYS, ours, ...).
          properties: Object.entries(msg.properties).filter(([, v]) => v !== null && v !== undefined),
          before,
          after,
        });
      }
      fs.writeFileSync(path.join(args.out, `sent-${topic}.json`), JSON.stringify({ messages: sent }));
      console.log(`sent ${sent.length} to ${topic}`);
    }
  } finally {
    await producer.close();
  }
}

async function read() {
  const expected = new Map(args.expect.map((item) => item.split('=')).map(([t, n]) => [t, Number(n)]));
  const got = new Map([...expected.keys()].map((t) => [t, []]));
  const consumers = [];
  let lastNew = Date.now();
  const started = Date.now();
  try {
    for (const topic of expected.keys()) {
      const consumer = new Consumer({
        ...common,
        consumerGroup: `interop-ali-${topic}-${process.pid}`,
        instanceName: `interop-${topic}-${process.pid}`,
        consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
      });
      consumer.on('error', (err) => console.error(`${topic}: ${err.message}`));
      consumer.subscribe(topic, '*', async (msg) => {
        got.get(topic).push({
          queue_offset: Number(msg.queueOffset),
          body: Buffer.from(msg.body).toString('base64'),
          tags: msg.tags,
          keys: msg.keys,
          born_timestamp: Number(msg.bornTimestamp),
          store_timestamp: Number(msg.storeTimestamp),
          sys_flag: msg.sysFlag,
          properties: Object.entries(msg.properties),
        });
        lastNew = Date.now();
      });
      consumers.push(consumer);
    }
    await Promise.all(consumers.map((c) => c.ready()));
    let doneAt = null;
    for (;;) {
      const now = Date.now();
      if (doneAt === null && [...expected].every(([t, n]) => got.get(t).length >= n)) doneAt = now;
      if ((doneAt !== null && now - doneAt >= QUIET_S * 1000) || now - lastNew >= STALL_S * 1000 ||
        now - started >= DEADLINE_S * 1000) break;
      await sleep(100);
    }
  } finally {
    // What came before any failure still counts.
    for (const [topic, messages] of got) {
      fs.writeFileSync(path.join(args.out, `recv-ali-ons-${topic}.json`), JSON.stringify(messages));
    }
    console.log([...got].map(([t, m]) => `${t}=${m.length}`).join(' '));
    for (const c of consumers) await c.close();
  }
}

const commands = { write, read };
if (!commands[command] || !args.namesrv || !args.out) {
  console.error('usage: ali_ons.js write|read --namesrv host:port --out DIR [--expect topic=count ...]');
  process.exit(2);
}
commands[command]().then(
  () => process.exit(0), // ali-ons keeps timers alive after close
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
