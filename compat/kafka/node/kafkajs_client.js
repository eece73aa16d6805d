// kafkajs 2.x (pure JavaScript, old non-flexible protocol versions) running the compat/kafka
// scenarios: create, produce, consume (group, commit), resume (same group sees only new records),
// txn (commit, abort, commit; read_committed and read_uncommitted groups see what they must),
// compact (a cleanup.policy=compact topic read from offset 0 until the cleaner left the latest
// record of each key).
// Prints `RESULT kafkajs <scenario> PASS|FAIL <detail>` lines like the Python clients do; the plan
// and its numbers mirror ../scenarios.py. With `--ssl-ca CA.pem` every connection is TLS (the
// broker's Kafka `SSL` port, certificate verified against that CA) and the results are reported
// as client `kafkajs-ssl`.
'use strict';

const fs = require('fs');
const { CompressionTypes, ConfigResourceTypes, Kafka, logLevel } = require('kafkajs');

let CLIENT = 'kafkajs';
const PARTITIONS = 3;
const FIRST_BATCH = 60;
const SECOND_BATCH = 25;
const CONSUME_TIMEOUT_MS = 40000;
const QUIET_AFTER_MS = 2000;
const SCENARIOS = ['create', 'produce', 'consume', 'resume', 'txn', 'kip848', 'compact'];
// Scenarios on topics of their own: a failure of one does not skip those after it.
const INDEPENDENT = ['txn', 'kip848', 'compact'];
// As COMPACT_* in ../scenarios.py.
const COMPACT_SEGMENT_MS = 100;
const COMPACT_CONFIGS = {
  'cleanup.policy': 'compact',
  'min.cleanable.dirty.ratio': '0.01',
  'segment.ms': String(COMPACT_SEGMENT_MS),
};
const COMPACT_KEYS = 10;
const COMPACT_ROUNDS = 4;
const COMPACT_TOMBSTONES = [3, 7];
const COMPACT_SEAL_KEY = 'seal';
const COMPACT_TIMEOUT_MS = 40000;
const COMPACT_READ_TIMEOUT_MS = 15000;
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

// As compact_plan in ../scenarios.py: rounds of {key, value} (null: a tombstone), the last
// one the seal record alone.
function compactPlan() {
  const rounds = [];
  for (let r = 0; r < COMPACT_ROUNDS; r += 1) {
    const round = [];
    for (let key = 0; key < COMPACT_KEYS; key += 1) {
      round.push({ key: `ck-${key}`, value: `${CLIENT}-round${r}-ck-${key}` });
    }
    rounds.push(round);
  }
  rounds.push(COMPACT_TOMBSTONES.map((key) => ({ key: `ck-${key}`, value: null })));
  rounds.push([{ key: COMPACT_SEAL_KEY, value: `${CLIENT}-seal` }]);
  return rounds;
}

// As compact_check in ../scenarios.py: true when `seen` ([offset, key, value] from offset 0
// to the seal) is the cleaned log; throws when it is not a valid log at all (offsets not
// ascending, a record not produced at its offset, the latest record of a key missing).
function compactCheck(produced, seen) {
  const id = ([offset, key, value]) => JSON.stringify([offset, key, value]);
  for (let i = 1; i < seen.length; i += 1) {
    if (seen[i - 1][0] >= seen[i][0]) {
      throw new Error(`offsets not ascending: ${seen.map(([offset]) => offset)}`);
    }
  }
  const producedIds = new Set(produced.map(id));
  const strangers = seen.filter((record) => !producedIds.has(id(record)));
  if (strangers.length) {
    throw new Error(`records not produced at those offsets: ${strangers.slice(0, 3).map(id)}`);
  }
  const last = new Map(produced.map(([offset, key]) => [key, offset]));
  const expected = produced.filter(([offset, key]) => last.get(key) === offset);
  const seenIds = new Set(seen.map(id));
  const lost = expected.filter((record) => !seenIds.has(id(record)));
  if (lost.length) throw new Error(`latest records lost: ${lost.slice(0, 3).map(id)}`);
  return { done: seen.map(id).join() === expected.map(id).join(), expected };
}

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

  async function compact() {
    const topic = `${args.topic}-compact`;
    const admin = kafka.admin();
    await admin.connect();
    let policy;
    try {
      await admin.createTopics({
        topics: [
          {
            topic,
            numPartitions: 1,
            replicationFactor: 1,
            configEntries: Object.entries(COMPACT_CONFIGS).map(([name, value]) => ({
              name,
              value,
            })),
          },
        ],
        waitForLeaders: true,
        timeout: 15000,
      });
      const described = await admin.describeConfigs({
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
        includeSynonyms: false,
      });
      const entry = described.resources[0].configEntries.find(
        (e) => e.configName === 'cleanup.policy',
      );
      policy = entry ? entry.configValue : undefined;
    } finally {
      await admin.disconnect();
    }
    if (policy !== 'compact') {
      throw new Error(`described cleanup.policy ${policy}, expected 'compact'`);
    }
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    const rounds = compactPlan();
    try {
      for (const round of rounds) {
        // Each round in a segment of its own: the next append rolls one older than segment.ms.
        await sleep(COMPACT_SEGMENT_MS * 1.5);
        await producer.send({
          topic,
          acks: -1,
          compression: CompressionTypes.GZIP,
          messages: round.map((r) => ({ ...r, partition: 0 })),
        });
      }
    } finally {
      await producer.disconnect();
    }
    const produced = rounds.flat().map(({ key, value }, offset) => [offset, key, value]);

    // One consumer (kafkajs needs a group) reads from offset 0 to the seal record, then seeks
    // back to 0 for the next read; nothing is produced after the seal, so no fetch from
    // before a seek can bring records into the next read.
    const consumer = kafka.consumer({
      groupId: `${args.group}-compact`,
      maxWaitTimeInMs: 100,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
    });
    await consumer.connect();
    let seen = [];
    let reads = 0;
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          const value = message.value === null ? null : message.value.toString();
          seen.push([Number(message.offset), message.key.toString(), value]);
        },
      });
      const deadline = Date.now() + COMPACT_TIMEOUT_MS;
      for (;;) {
        const readDeadline = Date.now() + COMPACT_READ_TIMEOUT_MS;
        while (!seen.length || seen[seen.length - 1][1] !== COMPACT_SEAL_KEY) {
          if (Date.now() > readDeadline) {
            throw new Error(`the seal record not read: ${seen.length} records`);
          }
          await sleep(50);
        }
        reads += 1;
        const { done, expected } = compactCheck(produced, seen);
        if (done) break;
        if (Date.now() > deadline) {
          throw new Error(
            `not compacted within ${COMPACT_TIMEOUT_MS / 1000}s (${reads} reads): ` +
              `${seen.length} of ${produced.length} records left, ${expected.length} expected`,
          );
        }
        await sleep(500);
        seen = [];
        consumer.seek({ topic, partition: 0, offset: '0' });
      }
    } finally {
      await consumer.disconnect();
    }
    const tombstones = seen.filter(([, , value]) => value === null).length;
    return (
      `described cleanup.policy=compact; ${produced.length} produced, the cleaner removed ` +
      `${produced.length - seen.length}: ${seen.length} left at their offsets ` +
      `(${tombstones} tombstones), read ${reads} time${reads === 1 ? '' : 's'}`
    );
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
    compact,
  };
  // COMPAT_KAFKA_TRANSACTIONS=0: the brokers refuse transactions (the runner's cluster mode);
  // COMPAT_KAFKA_COMPACTION=0: they refuse compaction settings (the same).
  const transactions = process.env.COMPAT_KAFKA_TRANSACTIONS !== '0';
  const compaction = process.env.COMPAT_KAFKA_COMPACTION !== '0';

  let failed = null;
  let independentFailed = false;
  for (const name of SCENARIOS) {
    if (name === 'kip848') {
      // kafkajs speaks only the classic group protocol.
      console.log(`RESULT ${CLIENT} ${name} n/a not supported by this client`);
      continue;
    }
    if ((name === 'txn' && !transactions) || (name === 'compact' && !compaction)) {
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
      if (INDEPENDENT.includes(name)) independentFailed = true;
      else failed = name;
    }
  }
  return failed === null && !independentFailed ? 0 : 1;
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
