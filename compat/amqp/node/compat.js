// Shared helpers of the Node compat drivers: the RESULT line protocol of ../lib/drivers.sh.
// Invariant: each scenario prints exactly one RESULT line; the exit status is 1 if any failed.
'use strict';

const port = Number(process.env.AMQP_PORT);
let failed = false;

function unique(prefix) {
  return `${prefix}.${Math.random().toString(16).slice(2, 10)}`;
}

function check(condition, what) {
  if (!condition) throw new Error(what);
}

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function scenario(name, fn) {
  const started = Date.now();
  try {
    const detail = await within(20000, name, fn());
    console.log(`RESULT ${name} PASS ${detail} (${((Date.now() - started) / 1000).toFixed(2)} s)`);
  } catch (err) {
    failed = true;
    console.error(err);
    console.log(`RESULT ${name} FAIL ${String(err.message || err).split('\n')[0]}`);
  }
}

// The broker's peak resident memory from the moment it is made (Linux /proc: writing 5 to
// clear_refs resets VmHWM). BROKER_PID is set by ../lib/broker.sh; against a broker this suite
// did not start there is nothing to measure and growth() is null.
function brokerMemory() {
  const fs = require('fs');
  const pid = process.env.BROKER_PID;
  const kib = (field) => {
    const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')
      .find((l) => l.startsWith(`${field}:`));
    if (!line) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(line.split(/\s+/)[1]);
  };
  if (!pid) return { growth: () => null };
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
  const before = kib('VmRSS');
  return { growth: () => (kib('VmHWM') - before) * 1024 };
}

function finish() {
  process.exit(failed ? 1 : 0);
}

module.exports = { port, unique, check, within, scenario, finish, brokerMemory };
