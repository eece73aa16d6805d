// kafkajs 2.x (pure JavaScript, old non-flexible protocol versions) running the compat/kafka
// scenarios: create, produce, consume (group, commit), resume (same group sees only new records),
// txn (commit, abort, commit; read_committed and read_uncommitted groups see what they must).
// Prints `RESULT kafkajs <scenario> PASS|FAIL <detail>` lines like the Python clients do; the plan
// and its numbers mirror ../scenarios.py. With `--ssl-ca CA.pem` every connection is TLS (the
// broker's Kafka `SSL` port, certificate verified against that CA) and the results are reported
// as client `kafkajs-ssl`.
'use strict';

const fs = require('fs');
const { CompressionTypes, Kafka, logLevel } = require('kafkajs');

let CLIENT = 'kafkajs';
const PARTITIONS = 3;
const FIRST_BATCH = 60;
const SECOND_BATCH = 25;
const CONSUME_TIMEOUT_MS = 40000;
const QUIET_AFTER_MS = 2000;
const SCENARIOS = ['create', 'produce', 'consume', 'resume', 'txn', 'kip848'];
// As TXN_PLAN in ../scenarios.py: [name, record count, committed].
const TXN_PLAN = [
  ['committed-a', 5, true],
  ['aborted', 3, false],
  ['committed-b', 4, true],
];

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    args[name] = argv[i + 1];
  }
  for (const required of ['bootstrap', 'topic', 'group']) {
    if (!args[required]) throw new Error(`missing --${required}`);
  }
  return args;
}

function records(start, count) {
  const out = [];
  for (let i = start; i < start + count; i += 1) {
    out.push({ key: `key-${i}`, value: `${CLIENT}-value-${i}` });
  }
  return out;
}

// Throws unless `seen` holds exactly the records of `expected`, each once.
function compare(expected, seen) {
  const id = (r) => `${r.key}=${r.value}`;
  const expectedIds = new Set(expected.map(id));
  const seenIds = new Set(seen.map(id));
  const duplicates = seen.length - seenIds.size;
  const missing = [...expectedIds].filter((x) => !seenIds.has(x));
  const unexpected = [...seenIds].filter((x) => !expectedIds.has(x));
  if (duplicates || missing.length || unexpected.length) {
    throw new Error(
      `expected ${expected.length} records, got ${seen.length}: ${missing.length} missing ` +
        `(e.g. ${missing.slice(0, 2)}), ${unexpected.length} unexpected ` +
        `(e.g. ${unexpected.slice(0, 2)}), ${duplicates} duplicates`,
    );
  }
  return `${seen.length} records, keys and values match`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let ssl;
  if (args['ssl-ca']) {
    CLIENT = 'kafkajs-ssl';
    ssl = { ca: [fs.readFileSync(args['ssl-ca'])], rejectUnauthorized: true };
  }
  const kafka = new Kafka({
    clientId: 'tributary-compat',
    // A comma-separated list (several brokers of one cluster), as librdkafka takes it.
    brokers: args.bootstrap.split(','),
    ssl,
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3 },
  });
  const first = records(0, FIRST_BATCH);
  const second = records(FIRST_BATCH, SECOND_BATCH);

  async function create() {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const created = await admin.createTopics({
        topics: [{ topic: args.topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: 15000,
      });
      if (created !== true) throw new Error('createTopics returned false (topic already existed)');
      const { topics } = await admin.fetchTopicMetadata({ topics: [args.topic] });
      const count = topics[0].partitions.length;
      if (count !== PARTITIONS) throw new Error(`${count} partitions, expected ${PARTITIONS}`);
      return `created, metadata shows ${count} partitions`;
    } finally {
      await admin.disconnect();
    }
  }

  async function produce(batch) {
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      const acks = await producer.send({
        topic: args.topic,
        acks: -1,
        compression: CompressionTypes.GZIP,
        messages: batch,
      });
      const errors = acks.filter((a) => a.errorCode !== 0);
      if (errors.length) throw new Error(`produce errors: ${JSON.stringify(errors)}`);
      const partitions = new Set(acks.map((a) => a.partition)).size;
      return `${batch.length} acked on ${partitions} partitions (idempotent, gzip)`;
    } finally {
      await producer.disconnect();
    }
  }

  async function consume(expected) {
    const consumer = kafka.consumer({
      groupId: args.group,
      maxWaitTimeInMs: 200,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
    });
    await consumer.connect();
    const seen = [];
    const next = new Map(); // partition -> next offset to commit
    try {
      await consumer.subscribe({ topics: [args.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          seen.push({ key: message.key.toString(), value: message.value.toString() });
          next.set(partition, (BigInt(message.offset) + 1n).toString());
        },
      });
      const deadline = Date.now() + CONSUME_TIMEOUT_MS;
      let completeAt = null;
      while (Date.now() < deadline) {
        if (completeAt === null && seen.length >= expected.length) completeAt = Date.now();
        if (completeAt !== null && Date.now() - completeAt >= QUIET_AFTER_MS) break;
        await sleep(100);
      }
      const detail = compare(expected, seen);
      await consumer.commitOffsets(
        [...next].map(([partition, offset]) => ({ topic: args.topic, partition, offset })),
      );
      return `${detail}; committed`;
    } finally {
      await consumer.disconnect();
    }
  }

  // Reads partition 0 of `topic` from the start with a group of its own (kafkajs consumers
  // need one) until `expected` arrived and nothing more came for QUIET_AFTER_MS.
  async function readAll(topic, readUncommitted, expected) {
    const isolation = readUncommitted ? 'read_uncommitted' : 'read_committed';
    const consumer = kafka.consumer({
      groupId: `${args.group}-txn-${isolation}`,
      readUncommitted,
      maxWaitTimeInMs: 200,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
    });
    await consumer.connect();
    const seen = [];
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          seen.push({ key: message.key.toString(), value: message.value.toString() });
        },
      });
      const deadline = Date.now() + CONSUME_TIMEOUT_MS;
      let completeAt = null;
      while (Date.now() < deadline) {
        if (completeAt === null && seen.length >= expected.length) completeAt = Date.now();
        if (completeAt !== null && Date.now() - completeAt >= QUIET_AFTER_MS) break;
        await sleep(100);
      }
    } finally {
      await consumer.disconnect();
    }
    const id = (r) => `${r.key}=${r.value}`;
    if (seen.map(id).join(',') !== expected.map(id).join(',')) {
      throw new Error(
        `${isolation}: expected ${expected.length} records in order, got ${seen.length}: ` +
          seen.slice(0, 14).map((r) => r.key),
      );
    }
    return `${isolation} ${seen.length}`;
  }

  async function txn() {
    const topic = `${args.topic}-txn`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({
        topics: [{ topic, numPartitions: 1, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: 15000,
      });
    } finally {
      await admin.disconnect();
    }
    const producer = kafka.producer({
      transactionalId: `${topic}-producer`,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    const plan = TXN_PLAN.map(([name, count, committed]) => {
      const batch = [];
      for (let i = 0; i < count; i += 1) {
        batch.push({ key: `${name}-${i}`, value: `${CLIENT}-${name}-${i}` });
      }
      return [batch, committed];
    });
    try {
      for (const [batch, committed] of plan) {
        const transaction = await producer.transaction();
        await transaction.send({ topic, acks: -1, messages: batch.map((r) => ({ ...r, partition: 0 })) });
        if (committed) await transaction.commit();
        else await transaction.abort();
      }
    } finally {
      await producer.disconnect();
    }
    const committed = plan.filter(([, ok]) => ok).flatMap(([batch]) => batch);
    const everything = plan.flatMap(([batch]) => batch);
    const readCommitted = await readAll(topic, false, committed);
    const readUncommitted = await readAll(topic, true, everything);
    return `commit, abort, commit; ${readCommitted}, ${readUncommitted}`;
  }

  const steps = {
    create,
    produce: () => produce(first),
    consume: () => consume(first),
    resume: async () => {
      await produce(second);
      return consume(second);
    },
    txn,
  };
  // COMPAT_KAFKA_TRANSACTIONS=0: the brokers refuse transactions (the runner's cluster mode).
  const transactions = process.env.COMPAT_KAFKA_TRANSACTIONS !== '0';

  let failed = null;
  for (const name of SCENARIOS) {
    if (name === 'kip848') {
      // kafkajs speaks only the classic group protocol.
      console.log(`RESULT ${CLIENT} ${name} n/a not supported by this client`);
      continue;
    }
    if (name === 'txn' && !transactions) {
      console.log(`RESULT ${CLIENT} ${name} n/a not supported by this broker setup`);
      continue;
    }
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
  return failed === null ? 0 : 1;
}

function report(scenario, passed, detail) {
  console.log(`RESULT ${CLIENT} ${scenario} ${passed ? 'PASS' : 'FAIL'} ${detail}`);
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
