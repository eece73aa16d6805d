// amqplib over AMQPS (`amqp.tls_port`): PLAIN as a broker user, EXTERNAL with a client
// certificate whose CN is that user, and EXTERNAL with a certificate of an unknown CN refused.
// The broker's certificate is verified against the run's CA (it names 127.0.0.1).
// Environment (set by ../lib/broker.sh): AMQPS_PORT, TLS_DIR, TLS_USER, TLS_PASSWORD,
// TLS_UNKNOWN_CN; see ../python/pika_tls.py.
'use strict';

const fs = require('fs');
const path = require('path');
const amqp = require('amqplib');
const { unique, check, within, scenario, finish } = require('./compat');

const port = Number(process.env.AMQPS_PORT);
const dir = process.env.TLS_DIR;
const user = process.env.TLS_USER;
const password = process.env.TLS_PASSWORD;
const unknown = process.env.TLS_UNKNOWN_CN;

function socketOptions(cn, extra = {}) {
  const options = { ca: [fs.readFileSync(path.join(dir, 'ca.pem'))], timeout: 5000, ...extra };
  if (cn) {
    options.cert = fs.readFileSync(path.join(dir, `client-${cn}.pem`));
    options.key = fs.readFileSync(path.join(dir, `client-${cn}-key.pem`));
  }
  return options;
}

async function roundTrip(url, options) {
  const connection = await amqp.connect(url, options);
  try {
    const channel = await connection.createConfirmChannel();
    const queue = unique('amqplib.tls');
    await channel.assertQueue(queue, { autoDelete: true });
    const bodies = Array.from({ length: 10 }, (_, i) => `tls-${i}`);
    for (const body of bodies) channel.sendToQueue(queue, Buffer.from(body));
    await channel.waitForConfirms();
    const received = [];
    await within(10000, 'consume 10', new Promise((resolve) => {
      channel.consume(queue, (message) => {
        received.push(message.content.toString());
        channel.ack(message);
        if (received.length === bodies.length) resolve();
      });
    }));
    check(JSON.stringify(received) === JSON.stringify(bodies), `received ${received}`);
    return '10 confirmed, consumed and acked';
  } finally {
    await connection.close();
  }
}

async function amqpsPlain() {
  const url = `amqps://${user}:${password}@127.0.0.1:${port}/`;
  return `${user} (PLAIN): ${await roundTrip(url, socketOptions())}`;
}

async function amqpsExternal() {
  const url = `amqps://127.0.0.1:${port}/`;
  const options = socketOptions(user, { credentials: amqp.credentials.external() });
  return `CN=${user} (EXTERNAL): ${await roundTrip(url, options)}`;
}

async function externalUnknownCn() {
  const url = `amqps://127.0.0.1:${port}/`;
  const options = socketOptions(unknown, { credentials: amqp.credentials.external() });
  let connection;
  try {
    connection = await amqp.connect(url, options);
  } catch (err) {
    const message = String(err.message || err).split('\n')[0];
    check(/ACCESS_REFUSED|403|refused/i.test(message), `refused, but not as access: ${message}`);
    return `CN=${unknown} refused (${message.slice(0, 120)})`;
  }
  await connection.close();
  throw new Error(`EXTERNAL as CN=${unknown} (no such user) logged in`);
}

(async () => {
  await scenario('amqps-plain', amqpsPlain);
  await scenario('amqps-external', amqpsExternal);
  await scenario('external-unknown-cn', externalUnknownCn);
  finish();
})();
