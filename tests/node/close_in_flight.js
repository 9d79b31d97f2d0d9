'use strict';
// Closing a subscription while its callback is in flight, from Node.js
// (tests/other_languages.rs runs it beside examples/node's lively.js):
// the library's thread is blocked in koffi's queue, waiting for the main
// thread to run the JS callback, so a synchronous lively_subscription_free
// on the main thread would wait for it for ever. The binding frees through
// `.async`, and the event in flight is delivered, whole, before close()
// resolves.
//
//   node close_in_flight.js TYPE    prints "event existing <uuid> <type> <host>",
//                                   then "closed after 1 events"

const lively = require('./lively');

const type = process.argv[2];
const client = lively.Client.connect();
let events = 0;
const sub = client.subscribe(type, { snapshot: true }, (e) => {
  events++;
  console.log(`event ${e.kind} ${e.uuid} ${e.type} ${e.host}`);
});
// Keep the main thread busy so the snapshot's callback is queued (its
// library thread waiting) by the time close() is called.
const until = Date.now() + 300;
while (Date.now() < until) { /* busy */ }
const guard = setTimeout(() => {
  console.log('close() did not resolve within 10 s');
  process.exit(1);
}, 10000);
sub.close().then(() => {
  clearTimeout(guard);
  console.log(`closed after ${events} events`);
  client.free();
});
