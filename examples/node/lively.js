'use strict';
// A small Node.js binding of os-lively's C ABI (include/os_lively.h)
// through koffi: connect, register a service, ask whether a service is UP
// by type and host, and subscribe to up/down changes with a callback.
//
// Callbacks come from a library thread, and JS runs only on the main
// thread. A callback registered with koffi.register() and called from
// another thread goes through koffi's thread-safe function (N-API's
// napi_threadsafe_function): the library thread queues the call into the
// event loop and blocks until the JS function has returned. So:
//  - the event pointer stays valid for the whole JS call (copy what you
//    keep: it is freed when the call returns);
//  - the event loop must keep running: a main thread stuck in a
//    synchronous call that waits for a callback (freeing a subscription,
//    closing the client) would deadlock, so those calls run through
//    koffi's `.async` (a worker thread) and the main thread stays free;
//  - koffi's broker does not keep Node alive: something else must (a
//    timer, a server), or the process exits while events are due;
//  - a registered callback holds one of koffi's 8192 slots until
//    koffi.unregister(): this binding unregisters in the release callback,
//    which the library calls once, after the subscription's last event.

const koffi = require('koffi');

const RESULT_OK = 0;
const RESULT_INVALID_ARGUMENT = 1;

const KIND_NAMES = ['existing', 'registered', 'up', 'down', 'updated', 'removed', 'resync'];
const REASON_NAMES = ['', 'forced', 'expired', 'deleted', 'missed', 'moved', 'lifted', 'closed', 'declared'];
const STATUS_UP = 0;

// Types, as in the header. The opaque handles are only ever passed back.
koffi.opaque('lively_config');
koffi.opaque('lively_client');
koffi.opaque('lively_subscription');

const LivelyService = koffi.struct('lively_service', {
  struct_size: 'size_t',
  uuid: 'const char *',
  service_type: 'const char *',
  host: 'const char *',
  status: 'uint32_t',
  region: 'const char *',
  maintenance_start: 'uint64_t',
  maintenance_end: 'uint64_t',
  maintenance_note: 'const char *',
  heartbeat_ms: 'uint64_t',
  exclusive: 'bool',
});

const LivelyServiceRecord = koffi.struct('lively_service_record', {
  uuid: 'const char *',
  service_type: 'const char *',
  host: 'const char *',
  status: 'uint32_t',
  region: 'const char *',
  maintenance_start: 'uint64_t',
  maintenance_end: 'uint64_t',
  maintenance_note: 'const char *',
  heartbeat_ms: 'uint64_t',
  heartbeat_missed: 'bool',
  forced_down: 'bool',
  exclusive: 'bool',
});

const LivelyFilter = koffi.struct('lively_filter', {
  struct_size: 'size_t',
  uuid: 'const char *',
  service_type: 'const char *',
  host: 'const char *',
  region: 'const char *',
  has_status: 'bool',
  status: 'uint32_t',
});

const LivelySubscribeOptions = koffi.struct('lively_subscribe_options', {
  struct_size: 'size_t',
  snapshot: 'bool',
  queue_capacity: 'size_t',
});

const LivelyEvent = koffi.struct('lively_event', {
  kind: 'uint32_t',
  reason: 'uint32_t',
  uuid: 'const char *',
  service_type: 'const char *',
  host: 'const char *',
  region: 'const char *',
  old_status: 'int32_t',
  new_status: 'int32_t',
  service: 'const lively_service_record *',
  revision: 'int64_t',
});

// The event pointer arrives undecoded (koffi cannot know how long it
// lives); the callback decodes it with koffi.decode() during the call.
const EventCallback = koffi.proto('void lively_event_callback(void *userdata, const void *event)');
const ReleaseCallback = koffi.proto('void lively_release_callback(void *userdata)');

/** Loads the library: `path`, else $OSLIVELY_LIB, else the soname on the system's search path. */
function load(path) {
  const lib = koffi.load(path || process.env.OSLIVELY_LIB || 'libos_lively.so.0');
  return {
    result_str: lib.func('const char *lively_result_str(uint32_t code)'),
    last_error: lib.func('const char *lively_last_error(void)'),
    version: lib.func('const char *lively_version(void)'),
    config_from_env: lib.func('uint32_t lively_config_from_env(_Out_ lively_config **out)'),
    config_set_endpoints: lib.func('uint32_t lively_config_set_endpoints(lively_config *config, const char *endpoints)'),
    config_set_status_ttl: lib.func('uint32_t lively_config_set_status_ttl(lively_config *config, uint64_t seconds)'),
    config_free: lib.func('void lively_config_free(lively_config *config)'),
    client_connect: lib.func('uint32_t lively_client_connect(const lively_config *config, _Out_ const lively_client **out)'),
    client_update: lib.func('uint32_t lively_client_update(const lively_client *client, const lively_service *service, _Out_ uint8_t *uuid_out, size_t len)'),
    client_is_up_by_type_host: lib.func('uint32_t lively_client_is_up_by_type_host(const lively_client *client, const char *service_type, const char *host, _Out_ bool *up)'),
    client_close: lib.func('uint32_t lively_client_close(const lively_client *client)'),
    client_free: lib.func('void lively_client_free(const lively_client *client)'),
    client_subscribe: lib.func('uint32_t lively_client_subscribe(const lively_client *client, const lively_filter *filter, const lively_subscribe_options *opts, lively_event_callback *callback, void *userdata, lively_release_callback *release, _Out_ lively_subscription **out)'),
    subscription_free: lib.func('void lively_subscription_free(lively_subscription *subscription)'),
  };
}

let native = null;
function lib() {
  if (!native) native = load();
  return native;
}

/**
 * A failed call: the C function, its lively_result code, the code's fixed
 * text, and lively_last_error() (the kind, then what was wrong, naming the
 * input).
 */
class LivelyError extends Error {
  constructor(op, code, message) {
    super(`${op}: ${message}`);
    this.name = 'LivelyError';
    this.op = op;
    this.code = code;
    this.text = lib().result_str(code);
  }
}

// lively_last_error() is per thread; synchronous koffi calls all run on
// the main thread, so reading it right after the failed call is sound.
// (After an `.async` call the failure happened on a worker thread, whose
// message the main thread cannot read: only the code is reported then.)
function check(op, rc) {
  if (rc !== RESULT_OK) throw new LivelyError(op, rc, lib().last_error());
}

// A JS string may hold a NUL, which C would read as its end ("typ\0evil"
// would reach the library as "typ"). Refuse it here, naming the input, as
// the library refuses any other invalid value.
function cstr(op, what, s) {
  if (typeof s !== 'string') throw new TypeError(`${op}: ${what} must be a string, not ${typeof s}`);
  const i = s.indexOf('\0');
  if (i >= 0) {
    throw new LivelyError(op, RESULT_INVALID_ARGUMENT,
      `${lib().result_str(RESULT_INVALID_ARGUMENT)}: ${what} ${JSON.stringify(s)} contains a NUL byte at offset ${i}`);
  }
  return s;
}

/** Connection settings from the OSLIVELY_* environment variables, with optional overrides. */
function configFromEnv({ endpoints, statusTtl } = {}) {
  const out = [null];
  check('lively_config_from_env', lib().config_from_env(out));
  const cfg = out[0];
  try {
    if (endpoints !== undefined) {
      check('lively_config_set_endpoints',
        lib().config_set_endpoints(cfg, cstr('lively_config_set_endpoints', 'endpoints', endpoints)));
    }
    if (statusTtl !== undefined) {
      check('lively_config_set_status_ttl', lib().config_set_status_ttl(cfg, statusTtl));
    }
  } catch (e) {
    lib().config_free(cfg);
    throw e;
  }
  return cfg;
}

class Client {
  /** Connects with the OSLIVELY_* settings (see configFromEnv for overrides). */
  static connect(options) {
    const cfg = configFromEnv(options);
    const out = [null];
    try {
      check('lively_client_connect', lib().client_connect(cfg, out));
    } finally {
      lib().config_free(cfg);
    }
    return new Client(out[0]);
  }

  constructor(handle) {
    this.handle = handle;
  }

  /**
   * Registers type+host UP on this client's lease and returns its uuid. It
   * stays UP while this process lives; if the process dies, it goes DOWN
   * (expired) one status TTL later.
   */
  register(serviceType, host) {
    const op = 'lively_client_update';
    const svc = {
      struct_size: koffi.sizeof(LivelyService),
      uuid: null,
      service_type: cstr(op, 'service type', serviceType),
      host: cstr(op, 'host', host),
      status: STATUS_UP,
      region: null,
      maintenance_start: 0,
      maintenance_end: 0,
      maintenance_note: null,
      heartbeat_ms: 0,
      exclusive: false,
    };
    const buf = Buffer.alloc(33); // LIVELY_UUID_BUF_LEN
    check(op, lib().client_update(this.handle, svc, buf, buf.length));
    return buf.toString('utf8', 0, buf.indexOf(0));
  }

  /** Whether type+host is effectively UP: record UP and its registering process alive. */
  isUpByTypeHost(serviceType, host) {
    const op = 'lively_client_is_up_by_type_host';
    const up = [false];
    check(op, lib().client_is_up_by_type_host(this.handle,
      cstr(op, 'service type', serviceType), cstr(op, 'host', host), up));
    return Boolean(up[0]);
  }

  /**
   * Calls `fn(event)` for every change of the services of `serviceType`
   * (null for all), first an `existing` event per service with `snapshot`.
   * `fn` runs on the main thread from the event loop, one event at a time,
   * while a library thread waits for it: keep it short.
   */
  subscribe(serviceType, { snapshot = false } = {}, fn) {
    const op = 'lively_client_subscribe';
    const filter = {
      struct_size: koffi.sizeof(LivelyFilter),
      uuid: null,
      service_type: serviceType == null ? null : cstr(op, 'service type', serviceType),
      host: null,
      region: null,
      has_status: false,
      status: 0,
    };
    const options = {
      struct_size: koffi.sizeof(LivelySubscribeOptions),
      snapshot: Boolean(snapshot),
      queue_capacity: 0,
    };
    return new Subscription(this.handle, filter, options, fn);
  }

  /** Revokes the lease (services DOWN at once, reason "closed"); resolves when done. */
  close() {
    return new Promise((resolve, reject) => {
      // .async: close ends the subscriptions and waits for a callback in
      // flight, which needs this (main) thread's event loop to run.
      lib().client_close.async(this.handle, (err, rc) => {
        if (err) reject(err);
        // The message is on the worker thread that failed: the code's
        // text is what this thread can give.
        else if (rc !== RESULT_OK) reject(new LivelyError('lively_client_close', rc, lib().result_str(rc)));
        else resolve();
      });
    });
  }

  /** Releases the handle (the connection closes with its last handle). */
  free() {
    if (this.handle) lib().client_free(this.handle);
    this.handle = null;
  }
}

class Subscription {
  constructor(client, filter, options, fn) {
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
    this.onEvent = koffi.register((_userdata, ptr) => {
      let event;
      try {
        // Decoded now, while the library thread waits: the strings are
        // copied into JS and the C event may be freed after we return.
        const e = koffi.decode(ptr, LivelyEvent);
        event = {
          kind: KIND_NAMES[e.kind] || `kind-${e.kind}`,
          reason: REASON_NAMES[e.reason] || '',
          uuid: e.uuid,
          type: e.service_type,
          host: e.host,
          up: e.new_status === STATUS_UP,
          revision: e.revision,
        };
        fn(event);
      } catch (err) {
        // An exception must not reach koffi's trampoline (it would be
        // swallowed there): report it and go on with the next event.
        console.error('lively: subscription callback threw:', err);
      }
    }, koffi.pointer(EventCallback));
    this.onRelease = koffi.register(() => {
      // Called once, after the last onEvent returned: the slots can go,
      // but not from inside this very call.
      setImmediate(() => {
        koffi.unregister(this.onEvent);
        koffi.unregister(this.onRelease);
        this.resolveEnded();
      });
    }, koffi.pointer(ReleaseCallback));
    const out = [null];
    const rc = lib().client_subscribe(client, filter, options, this.onEvent, null, this.onRelease, out);
    if (rc !== RESULT_OK) {
      // On failure the library never calls either callback.
      const message = lib().last_error();
      koffi.unregister(this.onEvent);
      koffi.unregister(this.onRelease);
      throw new LivelyError('lively_client_subscribe', rc, message);
    }
    this.handle = out[0];
  }

  /**
   * Cancels and frees the subscription; resolves once its release
   * callback has run (no event callback runs or starts after that).
   */
  close() {
    if (!this.handle) return this.ended;
    const handle = this.handle;
    this.handle = null;
    // .async: freeing waits for a callback in flight, and that callback
    // waits for this thread's event loop.
    lib().subscription_free.async(handle, () => {});
    return this.ended;
  }
}

module.exports = { load, Client, LivelyError, version: () => lib().version() };
