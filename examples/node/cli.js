#!/usr/bin/env node
'use strict';
// lively-node: a Node.js daemon and watcher over os-lively's C ABI (koffi).
//
//   node cli.js daemon TYPE HOST   register TYPE+HOST UP, print "uuid <uuid>" and
//                                  "is-up TYPE HOST up", then run until SIGINT/SIGTERM
//                                  (which close the client: DOWN at once)
//   node cli.js watch [TYPE]       print one line per event until SIGINT/SIGTERM:
//                                  "existing up <uuid> <type> <host>" for the
//                                  snapshot, then e.g. "down (expired) <uuid> <type> <host>"
//   node cli.js is-up TYPE HOST    print "up" (exit 0) or "down" (exit 1)
//   node cli.js bad-input          show that bad input is refused with a message
//
// Settings come from the OSLIVELY_* environment variables; the library
// from $OSLIVELY_LIB (a path), else libos_lively.so.0 on the search path.

const lively = require('./lively');

function fail(what, err) {
  console.error(`lively-node: ${what}: ${err.message}`);
  process.exit(2);
}

function connect() {
  try {
    return lively.Client.connect();
  } catch (err) {
    return fail('connect', err);
  }
}

// Resolves on SIGINT or SIGTERM from now on (call it before the first
// line is printed, so whoever reads it may stop us at once). A timer
// keeps the event loop alive meanwhile: koffi's callback broker does not,
// and neither do signal listeners.
function stopSignal() {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => {}, 1 << 30);
    const stop = (sig) => {
      clearInterval(keepAlive);
      resolve(sig);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

const upDown = (up) => (up ? 'up' : 'down');

async function daemon(type, host) {
  const stopped = stopSignal();
  const client = connect();
  let uuid;
  try {
    uuid = client.register(type, host);
  } catch (err) {
    fail('register', err);
  }
  console.log(`uuid ${uuid}`);
  console.log(`is-up ${type} ${host} ${upDown(client.isUpByTypeHost(type, host))}`);
  const sig = await stopped;
  console.error(`lively-node: stopping on ${sig}`);
  try {
    await client.close();
  } finally {
    client.free();
  }
}

async function watch(type) {
  const stopped = stopSignal();
  const client = connect();
  let sub;
  try {
    sub = client.subscribe(type || null, { snapshot: true }, (e) => {
      if (e.kind === 'existing') console.log(`existing ${upDown(e.up)} ${e.uuid} ${e.type} ${e.host}`);
      else if (e.reason) console.log(`${e.kind} (${e.reason}) ${e.uuid} ${e.type} ${e.host}`);
      else console.log(`${e.kind} ${e.uuid} ${e.type} ${e.host}`);
    });
  } catch (err) {
    fail('subscribe', err);
  }
  console.error('lively-node: watching');
  await stopped;
  await sub.close(); // no callback runs or starts after this
  client.free();
}

function isUp(type, host) {
  const client = connect();
  let up;
  try {
    up = client.isUpByTypeHost(type, host);
  } catch (err) {
    fail('is-up', err);
  } finally {
    client.free();
  }
  console.log(upDown(up));
  process.exitCode = up ? 0 : 1;
}

// The binding's own check (a NUL byte JS strings may hold and C cannot)
// and the library's (a '/' in a key segment), one line each.
function badInput() {
  const client = connect();
  for (const t of ['typ\0evil', 'typ/evil']) {
    try {
      client.register(t, 'host-1');
      console.log(`accepted ${JSON.stringify(t)}`);
    } catch (err) {
      console.log(`refused ${JSON.stringify(t)}: ${err.message}`);
    }
  }
  console.log(`is-up typ host-1 ${upDown(client.isUpByTypeHost('typ', 'host-1'))}`);
  client.free();
}

function usage() {
  console.error('usage: lively-node daemon TYPE HOST | watch [TYPE] | is-up TYPE HOST | bad-input');
  process.exit(2);
}

const [mode, ...args] = process.argv.slice(2);
switch (mode) {
  case 'daemon':
    if (args.length !== 2) usage();
    daemon(args[0], args[1]).catch((err) => fail('daemon', err));
    break;
  case 'watch':
    if (args.length > 1) usage();
    watch(args[0]).catch((err) => fail('watch', err));
    break;
  case 'is-up':
    if (args.length !== 2) usage();
    isUp(args[0], args[1]);
    break;
  case 'bad-input':
    badInput();
    break;
  default:
    usage();
}
