// A consumer with kafkajs (pure JavaScript): see README.md for the argument and output.
'use strict';
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
CompressionCodecs[CompressionTypes.LZ4] = require('./lz4-codec');

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
// kafkajs wraps some broker errors (a refused FindCoordinator becomes "coordinator not found")
// but logs the broker's error type: the last one logged is the cause.
let lastBrokerError = null;
const fail = (e) => {
  let name = e.type || e.name;
  if (e.name === 'KafkaJSSASLAuthenticationError') name = 'SASL_AUTHENTICATION_FAILED';
  if (e.originalError && e.originalError.type) name = e.originalError.type;
  if (e.errors && e.errors[0] && e.errors[0].type) name = e.errors[0].type;
  if (e.name === 'KafkaJSGroupCoordinatorNotFound' && lastBrokerError) name = lastBrokerError;
  const cause = e.originalError || e.cause;
  const detail = String(e.message) + (cause ? ` (cause: ${cause.name}: ${cause.message})` : '');
  out({ error: name, detail: detail.slice(0, 300) });
  process.exit(1);
};

const kafka = new Kafka({
  clientId: 'ferry-test-kafkajs',
  brokers: [spec.bootstrap],
  sasl: { mechanism: spec.mechanism.toLowerCase(), username: spec.username, password: spec.password },
  logLevel: logLevel.DEBUG,
  logCreator: () => ({ log }) => {
    if (log.error && typeof log.error === 'object' && log.error.type) lastBrokerError = log.error.type;
  },
  retry: { retries: 2 },
});

(async () => {
  const deadline = Date.now() + (spec.timeout_s || 60) * 1000;
  if (spec.action === 'consume' || spec.action === 'member') {
    // A group member rides out rebalances on a loaded machine (a member killed, another
    // joining): more retries than the client's default here, which is kept low so that refused
    // sign-ins fail fast.
    const retry = spec.action === 'member' ? { retries: 8 } : undefined;
    let n = 0;
    let c;
    // A member whose consumer crashed for good — kafkajs gives up on some rebalance errors
    // (an ILLEGAL_GENERATION at a commit: kafkajs issue #1466) — starts a new one in the same
    // group, as an application would, up to three times; it goes on after the group's last
    // commit (a record is printed only once its commit succeeded). Each crash is printed.
    let rejoins = 0;
    const start = async () => {
      c = kafka.consumer({ groupId: spec.group, sessionTimeout: 6000, heartbeatInterval: 1000, retry });
      c.on(c.events.CRASH, (ev) => {
        const e = ev.payload.error;
        if (ev.payload.restart) {
          out({ crashed: e.name, detail: String(e.message).slice(0, 200), restart: true });
        } else if (spec.action === 'member' && rejoins < 3) {
          rejoins += 1;
          out({ crashed: e.name, detail: String(e.message).slice(0, 200), rejoin: rejoins });
          const old = c;
          setTimeout(() => old.disconnect().catch(() => {}).then(start).catch(fail), 1000);
        } else {
          fail(e);
        }
      });
      await c.connect();
      await c.subscribe({ topic: spec.topic, fromBeginning: true });
      const consumer = c;
      await c.run({
        autoCommit: false,
        eachMessage: async ({ topic, partition, message }) => {
          // A batch may hold more than asked for: the rest is left uncommitted for the next reader.
          if (spec.action === 'consume' && n >= spec.count) return;
          await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
          n += 1;
          out({ record: Number(message.offset) });
        },
      });
    };
    await start();
    while (spec.action === 'member' || n < spec.count) {
      if (spec.action === 'consume' && Date.now() > deadline) {
        out({ error: 'TIMEOUT', read: n });
        process.exit(1);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await c.disconnect();
    out({ done: n });
  } else if (spec.action === 'produce') {
    const p = kafka.producer({ retry: { retries: 0 } });
    await p.connect();
    await p.send({ topic: spec.topic, acks: -1, messages: [{ value: 'not allowed' }] });
    out({ done: 1 });
  } else if (spec.action === 'create_topic') {
    const a = kafka.admin();
    await a.connect();
    await a.createTopics({ topics: [{ topic: spec.topic, numPartitions: 1 }], waitForLeaders: false });
    out({ done: 1 });
  }
  process.exit(0);
})().catch(fail);
