"""The Pythonic API: `Client`, `View`, `Subscription`.

Every method is one call of the C API (`include/os_lively.h`). Blocking
calls release the GIL. A client is safe to share between threads. After
`os.fork()` every handle the child inherited works again on its next use,
connected anew: a client connects a client of its own (the parent's lease
and thread do not carry over; the inherited C handle is left alone, never
freed or used), a view reloads, an iterated subscription subscribes again.
"""

import atexit
import ctypes
import datetime
import logging
import os
import sys
import threading
import time
import weakref
from typing import Callable, Iterator, List, Optional, Sequence, Union

from . import _check, _convert, _gil
from ._ffi import HAS_HEARTBEAT, HAS_UP, NULL, UINT64_MAX, arg, cstr, fail, ffi, lib
from .errors import ClosedError, NotSupportedError, error_for
from .model import Event, ServiceInfo, Status

_log = logging.getLogger("os_lively")

Seconds = Union[int, float, datetime.timedelta]
Timestamp = Union[int, float, datetime.datetime, None]

_FORKED = lib.LIVELY_RESULT_FORKED
_NULL_PARAMETER = lib.LIVELY_RESULT_NULL_PARAMETER
_CLOSED = lib.LIVELY_RESULT_CLOSED
_TIMEOUT = lib.LIVELY_RESULT_TIMEOUT

# Everything with a handle, so a forked child can drop the parent's
# handles and clients can be closed at exit.
_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
_handles: "weakref.WeakSet" = weakref.WeakSet()


#: Bounds of the settings, as the library's environment variables have them.
MAX_STATUS_TTL = 365 * 24 * 3600
MAX_TIMEOUT = 86400.0
MAX_CALL_POLLING = 0.1
MAX_HEARTBEAT = 7 * 24 * 3600.0
MAX_QUEUE_CAPACITY = 1 << 24


def _millis(value: Optional[Seconds], name: str, maximum: float = MAX_TIMEOUT) -> int:
    """Optional non-negative seconds as whole milliseconds (None -> 0)."""
    if value is None:
        return 0
    return _check.millis(value, name, maximum=maximum)


def _epoch(value: Timestamp, name: str) -> int:
    return _check.timestamp(value, name)


def _status_code(status, name: str = "status") -> int:
    """Status.UP/DOWN or "UP"/"DOWN" (any case) as the C value. A bare int
    is refused: UP is 0, so `status=0` (or False) would read as "not up"
    and register UP."""
    if isinstance(status, str):
        try:
            return int(Status[status.upper()])
        except KeyError:
            raise ValueError("%s must be UP or DOWN, not %r" % (name, status)) from None
    if isinstance(status, Status):
        return int(status)
    if isinstance(status, int) and not isinstance(status, bool):
        raise TypeError("%s must be Status.UP or Status.DOWN (or 'UP'/'DOWN'), not the int %d: as a number UP is 0, "
                        "DOWN 1; Status(%d) converts one on purpose" % (name, status, status))
    raise TypeError("%s must be Status.UP or Status.DOWN (or 'UP'/'DOWN'), not %s" % (name, _check.type_name(status)))


def _filter(uuid=None, service_type=None, host=None, region=None, status=None, names=None):
    f = ffi.new("lively_filter *", {"struct_size": ffi.sizeof("lively_filter")})
    keep = []  # the bytes must outlive the call
    for field, value in (("uuid", uuid), ("service_type", service_type), ("host", host), ("region", region)):
        if value is not None:
            b = cstr(value, (names or {}).get(field, field))
            keep.append(b)
            setattr(f, field, b)
    if status is not None:
        f.has_status = True
        f.status = _status_code(status)
    return f, keep


class Client:
    """A connection to etcd that registers services and answers liveness
    questions. Services registered UP through it stay UP while it lives;
    `close()` (or leaving the `with` block, or the end of the process)
    revokes its lease, so they go DOWN at once.

    Lifetime: the client, each of its views and each iterated subscription
    keep the connection (and so the lease) alive; once the last of them is
    garbage-collected, the connection closes and the services it
    registered go DOWN at once. Keep a reference to the client for as long
    as its services must stay UP. A callback subscription runs until
    cancelled or its client closed, referenced or not. `close()` ends the
    connection for all of them at once.

    After `os.fork()` the child's handles work again on their next use,
    connected anew (a client of its own, with its own lease); a callback
    subscription stays the parent's. A multiprocessing child closes what it
    connected when it exits, as any process does at exit.

    Settings left as None keep the library's defaults (`localhost:2379`,
    no namespace, 60 s TTL, 5 s timeouts, no call polling) or, with
    `Client.from_env()`, the `OSLIVELY_*` environment variables.
    `call_polling` (seconds, 0 to 0.1): how long the library's runtime
    thread keeps polling after a call instead of sleeping (default 0: off);
    an opt-in that trades CPU for a little latency per call.
    """

    def __init__(
        self,
        endpoints: Union[str, Sequence[str], None] = None,
        *,
        namespace: Optional[str] = None,
        status_ttl: Optional[Seconds] = None,
        connect_timeout: Optional[Seconds] = None,
        request_timeout: Optional[Seconds] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        tls_server_name: Optional[str] = None,
        call_polling: Optional[Seconds] = None,
        _from_env: bool = False,
    ) -> None:
        # Every setting is checked here, before anything connects.
        if endpoints is not None:
            if isinstance(endpoints, str):
                _check.text(endpoints, "endpoints")
            elif isinstance(endpoints, (list, tuple)):
                if not endpoints:
                    raise ValueError("endpoints must not be empty")
                for i, e in enumerate(endpoints):
                    _check.text(e, "endpoints[%d]" % i)
            else:
                raise TypeError("endpoints must be a str ('host:port', comma-separated) or a list of str, not %s"
                                % _check.type_name(endpoints))
        for name, value in (("namespace", namespace), ("user", user), ("password", password),
                            ("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file),
                            ("tls_server_name", tls_server_name)):
            _check.text(value, name, optional=True)
        if password is not None and user is None:
            raise ValueError("password needs user")
        if status_ttl is not None:
            _check.whole_seconds(status_ttl, "status_ttl", minimum=1, maximum=MAX_STATUS_TTL)
        for name, value in (("connect_timeout", connect_timeout), ("request_timeout", request_timeout)):
            if value is not None:
                _check.seconds(value, name, minimum=0.0, above_minimum=True, maximum=MAX_TIMEOUT)
        if call_polling is not None:
            _check.seconds(call_polling, "call_polling", maximum=MAX_CALL_POLLING)
        self._settings = dict(
            endpoints=endpoints, namespace=namespace, status_ttl=status_ttl,
            connect_timeout=connect_timeout, request_timeout=request_timeout,
            user=user, password=password, ca_file=ca_file, cert_file=cert_file,
            key_file=key_file, tls_server_name=tls_server_name,
            call_polling=call_polling,
        )
        self._from_env = _from_env
        self._lock = threading.Lock()
        self._closed = False
        self._handle = NULL
        self._pid = os.getpid()
        self._handle = self._connect()
        _clients.add(self)
        _handles.add(self)

    @classmethod
    def from_env(cls, endpoints: Union[str, Sequence[str], None] = None, **overrides) -> "Client":
        """A client configured from the `OSLIVELY_*` environment variables
        (as the C library reads them), then `overrides` (the constructor's
        keyword arguments)."""
        return cls(endpoints, _from_env=True, **overrides)

    # -- connection ---------------------------------------------------

    def _config(self):
        s = self._settings
        if self._from_env:
            out = ffi.new("lively_config **")
            rc = lib.lively_config_from_env(out)
            if rc:
                fail(rc, "reading the OSLIVELY_* environment")
            cfg = out[0]
        else:
            cfg = lib.lively_config_new()
            if cfg == NULL:
                fail(lib.LIVELY_RESULT_PANIC, "lively_config_new")
        cfg = ffi.gc(cfg, lib.lively_config_free)

        def check(rc, what):
            if rc:
                fail(rc, what)

        eps = s["endpoints"]
        if eps is not None:
            if not isinstance(eps, str):
                eps = ",".join(eps)
            check(lib.lively_config_set_endpoints(cfg, arg(eps, "endpoints")), "endpoints %r" % eps)
        if s["namespace"] is not None:
            check(lib.lively_config_set_namespace(cfg, arg(s["namespace"], "namespace")), "namespace")
        if s["status_ttl"] is not None:
            ttl = _check.whole_seconds(s["status_ttl"], "status_ttl", minimum=1, maximum=MAX_STATUS_TTL)
            check(lib.lively_config_set_status_ttl(cfg, ttl), "status_ttl %r" % ttl)
        if s["connect_timeout"] is not None:
            ms = _millis(s["connect_timeout"], "connect_timeout")
            check(lib.lively_config_set_connect_timeout_ms(cfg, ms), "connect_timeout")
        if s["request_timeout"] is not None:
            ms = _millis(s["request_timeout"], "request_timeout")
            check(lib.lively_config_set_request_timeout_ms(cfg, ms), "request_timeout")
        if s["call_polling"] is not None:
            us = int(round(_check.seconds(s["call_polling"], "call_polling", maximum=MAX_CALL_POLLING) * 1_000_000))
            check(lib.lively_config_set_call_polling_us(cfg, us), "call_polling %r" % s["call_polling"])
        if s["user"] is not None:
            check(lib.lively_config_set_user(cfg, arg(s["user"], "user"), arg(s["password"] or "", "password")), "user")
        if s["ca_file"] is not None:
            check(lib.lively_config_set_tls_ca_file(cfg, arg(s["ca_file"], "ca_file")), "ca_file")
        if s["cert_file"] is not None or s["key_file"] is not None:
            check(lib.lively_config_set_tls_client_cert(
                cfg, arg(s["cert_file"], "cert_file"), arg(s["key_file"], "key_file")), "cert_file/key_file")
        if s["tls_server_name"] is not None:
            check(lib.lively_config_set_tls_server_name(cfg, arg(s["tls_server_name"], "tls_server_name")),
                  "tls_server_name")
        return cfg

    def _connect(self):
        cfg = self._config()
        out = ffi.new("const lively_client **")
        rc = lib.lively_client_connect(cfg, out)
        if rc:
            fail(rc, "connect")
        return out[0]

    def _after_fork(self) -> None:
        # The inherited handle belongs to the parent: its runtime thread does
        # not exist here and its lease is the parent's. Drop it unfreed; the
        # next call connects anew (see _recover).
        self._handle = NULL
        self._lock = threading.Lock()

    def _recover(self, rc: int, what: str) -> None:
        """After a failed call: reconnect if the failure is a fork (the
        caller then retries once), else raise."""
        if self._closed:
            raise ClosedError("%s: the client is closed" % what, _CLOSED)
        if rc in (_FORKED, _NULL_PARAMETER) and (self._handle == NULL or rc == _FORKED):
            with self._lock:
                if self._pid != os.getpid() or self._handle == NULL:
                    self._pid = os.getpid()
                    self._handle = NULL
                    self._handle = self._connect()
                    _log.debug("connected a new client in forked child %d", self._pid)
            return
        fail(rc, what)

    def _call(self, what: str, fn, *args) -> None:
        rc = fn(self._handle, *args)
        if rc:
            self._recover(rc, what)
            rc = fn(self._handle, *args)
            if rc:
                fail(rc, what)

    # -- writes -------------------------------------------------------

    def update(
        self,
        service_type: str,
        host: str,
        *,
        uuid: Optional[str] = None,
        region: Optional[str] = None,
        status: Union[Status, str] = Status.UP,
        heartbeat: Optional[Seconds] = None,
        maintenance_start: Timestamp = None,
        maintenance_end: Timestamp = None,
        maintenance_note: Optional[str] = None,
        exclusive: bool = False,
    ) -> str:
        """Creates or updates a service (one etcd transaction) and returns
        its uuid. Identity is type+host: with `uuid` None, a type+host
        already registered is taken over under its uuid (a restarted daemon
        gets its service back, UP at once); otherwise a uuid is generated.
        `exclusive=True` refuses (ConflictError) while another live client
        holds it. UP services stay UP while this client lives and, with
        `heartbeat` (seconds), only while you also call `heartbeat()` or
        `update()` at least that often; `heartbeat=None` keeps the deadline
        the service has, `heartbeat=0` removes it."""
        if not isinstance(exclusive, bool):
            raise TypeError("exclusive must be a bool, not %r" % (exclusive,))
        heartbeat_ms = _millis(heartbeat, "heartbeat", MAX_HEARTBEAT)
        if heartbeat is not None and heartbeat_ms == 0:
            heartbeat_ms = lib.LIVELY_HEARTBEAT_REMOVE
        return self._update(
            uuid, service_type, host, _status_code(status), region,
            _epoch(maintenance_start, "maintenance_start"), _epoch(maintenance_end, "maintenance_end"),
            maintenance_note, heartbeat_ms, exclusive,
        )

    _UPDATE_NAMES = ("uuid", "service_type", "host", "region", "maintenance_note")

    def _update(self, uuid, service_type, host, status, region, m_start, m_end, m_note, heartbeat_ms,
                exclusive=False, names=_UPDATE_NAMES) -> str:
        svc = ffi.new("lively_service *", {"struct_size": ffi.sizeof("lively_service")})
        n_uuid, n_type, n_host, n_region, n_note = names
        keep = [cstr(uuid, n_uuid), _check.cstr(service_type, n_type, optional=False),
                _check.cstr(host, n_host, optional=False), cstr(region, n_region), cstr(m_note, n_note)]
        svc.uuid, svc.service_type, svc.host, svc.region, svc.maintenance_note = keep
        svc.status = status
        svc.maintenance_start = m_start
        svc.maintenance_end = m_end
        if heartbeat_ms:
            if not HAS_HEARTBEAT:
                raise NotSupportedError(
                    "update(heartbeat=...): the loaded os-lively library has no heartbeat deadlines "
                    "(lively_service.heartbeat_ms); rebuild it from a newer checkout")
            svc.heartbeat_ms = heartbeat_ms
        if exclusive:
            svc.exclusive = True
        out = ffi.new("char[]", lib.LIVELY_UUID_BUF_LEN)
        self._call("update %s@%s" % (service_type, host), lib.lively_client_update, svc, out, len(out))
        return ffi.string(out).decode()

    def heartbeat(self, uuid: str) -> None:
        """Checks in for a service registered with a heartbeat deadline
        (local: no round trip)."""
        if not HAS_HEARTBEAT:
            raise NotSupportedError("heartbeat(): the loaded os-lively library has no lively_client_heartbeat")
        u = _check.text(uuid, "uuid")
        # About 100 ns and never blocking: bound through ctypes.PyDLL, which
        # keeps the GIL (see os_lively._gil).
        rc = _gil.client_heartbeat(_gil.address(self._handle), u)
        if rc:
            self._recover(rc, "heartbeat %s" % uuid)
            rc = _gil.client_heartbeat(_gil.address(self._handle), u)
            if rc:
                fail(rc, "heartbeat %s" % uuid)

    def down(self, uuid: str, note: Optional[str] = None, *, start: Timestamp = None, end: Timestamp = None) -> None:
        """Forces a service DOWN for maintenance (an operator's decision:
        with a library that has `up()`, it sticks until `up()` or the end of
        the window)."""
        u, n = _check.text(uuid, "uuid"), arg(note, "note")
        self._call("down %s" % uuid, lib.lively_client_down, u, n, _epoch(start, "start"), _epoch(end, "end"))

    def up(self, uuid: str) -> None:
        """Lifts a forced DOWN."""
        if not HAS_UP:
            raise NotSupportedError("up(): the loaded os-lively library has no lively_client_up")
        u = _check.text(uuid, "uuid")
        self._call("up %s" % uuid, lib.lively_client_up, u)

    def delete(self, uuid: str) -> bool:
        """Removes a service; False if there was none."""
        u = _check.text(uuid, "uuid")
        out = ffi.new("bool *")
        self._call("delete %s" % uuid, lib.lively_client_delete, u, out)
        return bool(out[0])

    # -- reads --------------------------------------------------------

    def is_up(self, uuid: Optional[str] = None, *, service_type: Optional[str] = None,
              host: Optional[str] = None) -> bool:
        """Whether a service is effectively UP now (one round trip by uuid,
        two by type and host). Unknown services are not UP."""
        _check.one_of(uuid, service_type, host, "is_up")
        out = ffi.new("bool *")
        if uuid is not None:
            u = _check.text(uuid, "uuid")
            self._call("is_up %s" % uuid, lib.lively_client_is_up, u, out)
        else:
            t, h = _check.text(service_type, "service_type"), _check.text(host, "host")
            self._call("is_up %s@%s" % (service_type, host), lib.lively_client_is_up_by_type_host, t, h, out)
        return bool(out[0])

    def get(self, uuid: Optional[str] = None, *, service_type: Optional[str] = None,
            host: Optional[str] = None) -> ServiceInfo:
        """A service's record and liveness; `NotFoundError` if unknown."""
        _check.one_of(uuid, service_type, host, "get")
        out = ffi.new("lively_service_info **")
        if uuid is not None:
            u = _check.text(uuid, "uuid")
            self._call("get %s" % uuid, lib.lively_client_get, u, out)
        else:
            t, h = _check.text(service_type, "service_type"), _check.text(host, "host")
            self._call("get %s@%s" % (service_type, host), lib.lively_client_get_by_type_host, t, h, out)
        info = ffi.gc(out[0], lib.lively_service_info_free)
        return _convert.service_info(info.service, info.up)

    def list(self, *, uuid: Optional[str] = None, service_type: Optional[str] = None,
             host: Optional[str] = None, region: Optional[str] = None,
             status: Union[Status, str, None] = None) -> List[ServiceInfo]:
        """Services matching every filter given (`status` is the effective
        status)."""
        f, keep = _filter(uuid, service_type, host, region, status)
        out = ffi.new("lively_service_list **")
        self._call("list", lib.lively_client_list, f, out)
        lst = ffi.gc(out[0], lib.lively_service_list_free)
        return _convert.service_list(lst)

    def stats(self) -> dict:
        """Counters: keepalives, reconnects, lease re-grants, events,
        resyncs, the lease and its remaining TTL (no round trip)."""
        out = ffi.new("lively_stats *", {"struct_size": ffi.sizeof("lively_stats")})
        self._call("stats", lib.lively_client_stats, out)
        return _convert.stats(out)

    # -- subscriptions and views --------------------------------------

    def subscribe(
        self,
        callback: Optional[Callable[[Event], None]] = None,
        *,
        uuid: Optional[str] = None,
        service_type: Optional[str] = None,
        host: Optional[str] = None,
        region: Optional[str] = None,
        snapshot: bool = False,
        queue_capacity: int = 0,
    ) -> "Subscription":
        """Subscribes to changes of the matching services. Without a
        callback, iterate the returned subscription; with one, it is called
        for each event on a library thread (one at a time), and an exception
        it raises is logged (logger `os_lively`) without ending anything.
        `cancel()` works from any thread and from inside the loop or
        callback."""
        _check.callback(callback)
        capacity = _check.integer(queue_capacity, "queue_capacity", minimum=0, maximum=MAX_QUEUE_CAPACITY)
        f, keep = _filter(uuid, service_type, host, region)
        opts = ffi.new("lively_subscribe_options *", {"struct_size": ffi.sizeof("lively_subscribe_options")})
        opts.snapshot = bool(snapshot)
        opts.queue_capacity = capacity
        out = ffi.new("lively_subscription **")
        if callback is None:

            def pull_handle():
                # Also run in a forked child, on the inherited subscription's
                # next use: the same filter and options, from then on.
                # (`keep` holds the strings `f` points to.)
                strings = keep  # noqa: F841 (captured: `f` points into it)
                self._call("subscribe", lib.lively_client_subscribe_pull, f, opts, out)
                return out[0]

            return Subscription(self, pull_handle(), None, pull_handle)
        state = _CallbackState(callback)
        self._call("subscribe", lib.lively_client_subscribe, f, opts, _os_lively_event_cb,
                   state.handle, _os_lively_release_cb, out)
        _pending.add(state)
        sub = Subscription(self, out[0], state)
        # Like a thread, a callback subscription runs until cancelled (or
        # its client closed), whether or not the caller keeps the object.
        _running.add(sub)
        return sub

    def view(self, stale_after: Optional[Seconds] = None) -> "View":
        """A local copy of the namespace kept current by a watch: reads
        without a round trip. Reads fail with `StaleError` once the watch
        has been disconnected for `stale_after` seconds (None: the status
        TTL; `float('inf')`: never)."""
        return View(self, stale_after)

    # -- lifetime -----------------------------------------------------

    def close(self) -> None:
        """Revokes the lease (this client's services go DOWN at once) and
        stops the client's thread. Later calls raise `ClosedError`. Safe
        from any thread while others use the client, its views and
        subscriptions: their calls return (`ClosedError`; iterations end),
        and the C handle is freed only when the object is garbage-collected,
        never under a running call."""
        if self._closed:
            return
        self._closed = True
        for sub in [s for s in list(_running) if s._client is self]:
            _running.discard(sub)  # the library ends them with the client
        if self._handle != NULL and self._pid == os.getpid():
            rc = lib.lively_client_close(self._handle)
            if rc:
                fail(rc, "close")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # No thread is inside a method now (each would hold a reference);
        # close() left the handle allocated for calls still running.
        h = getattr(self, "_handle", NULL)
        if h != NULL and self._pid == os.getpid():
            self._handle = NULL
            _free(lib.lively_client_free, h)


class _CallbackState:
    """What a callback subscription's userdata points to; kept alive (in
    `_pending`) until the library's release callback."""

    __slots__ = ("callback", "handle", "__weakref__")

    def __init__(self, callback):
        self.callback = callback
        self.handle = ffi.new_handle(self)


_pending = set()
_running = set()  # callback subscriptions not yet cancelled


# The wheel's cffi binding is in ABI mode (no compiler at build time), so
# the C callbacks are `ffi.callback` trampolines (libffi closures), made
# once and kept alive here for the life of the process.
@ffi.callback("void(void *, const struct lively_event *)")
def _os_lively_event_cb(userdata, event) -> None:
    try:
        state = ffi.from_handle(userdata)
        state.callback(_convert.event(event))
    except BaseException:
        # Never let an exception reach the library's thread: log it and go on.
        _log.exception("exception in a subscription callback (the subscription goes on)")


@ffi.callback("void(void *)")
def _os_lively_release_cb(userdata) -> None:
    try:
        _pending.discard(ffi.from_handle(userdata))
    except BaseException:
        _log.exception("releasing a subscription")


class Subscription:
    """A subscription: iterate it (pull) or let its callback run.

    Iteration yields `Event`s and ends once `cancel()` was called (from any
    thread, or inside the loop) or the client closed.

    After `os.fork()`, an iterated subscription inherited by the child
    subscribes again on its next use, through the child's own client (as
    the client and its views reconnect): the child gets the events from
    then on (with `snapshot`, a snapshot first). A callback subscription
    stays the parent's: in the child it is `cancelled` and its callback is
    never called there.
    """

    def __init__(self, client: Client, handle, state, resubscribe=None) -> None:
        self._client = client
        self._handle = handle
        self._state = state
        self._resubscribe = resubscribe
        self._cancelled = False
        self._pid = os.getpid()
        _handles.add(self)

    def _after_fork(self) -> None:
        self._handle = NULL
        if self._state is not None:
            self._cancelled = True  # the callback belongs to the parent

    def cancel(self) -> None:
        """Stops the subscription: no callback starts after this returns
        (outside a callback); iteration ends."""
        self._cancelled = True
        _running.discard(self)
        if self._handle != NULL:
            rc = lib.lively_subscription_cancel(self._handle)
            if rc and rc != _CLOSED:
                fail(rc, "cancel")

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def next(self, timeout: Optional[Seconds] = None) -> Optional[Event]:
        """The next event, waiting at most `timeout` seconds (None: until
        one arrives); None on timeout, or at once once cancelled (see
        `cancelled`)."""
        return self._next(timeout)

    def _next(self, timeout: Optional[Seconds]) -> Optional[Event]:
        if self._state is not None:
            raise TypeError("next(): this subscription delivers to its callback")
        remaining = None if timeout is None else _millis(timeout, "timeout", float("inf"))
        out = ffi.new("lively_event **")
        while not self._cancelled:
            if self._handle == NULL:
                if self._pid == os.getpid() or self._resubscribe is None:
                    raise ClosedError("this subscription is closed", _CLOSED)
                self._handle = self._resubscribe()  # in a forked child
                self._pid = os.getpid()
            # Wait in slices so Ctrl-C and cancel() are noticed promptly.
            step = 200 if remaining is None else min(200, remaining)
            rc = lib.lively_subscription_next(self._handle, step, out)
            if rc == _CLOSED:
                self._cancelled = True
                break
            if rc:
                fail(rc, "subscription next")
            if out[0] != NULL:
                ev = ffi.gc(out[0], lib.lively_event_free)
                return _convert.event(ev)
            if remaining is not None:
                remaining -= step
                if remaining <= 0:
                    break
        return None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        ev = self._next(None)
        if ev is None:
            raise StopIteration
        return ev

    def close(self) -> None:
        """Cancels the subscription. Safe from any thread, also while
        another thread iterates it: that iteration ends (and `next()`
        returns None). The C handle is freed once no thread uses it (when
        the object is garbage-collected), never under a running call."""
        self.cancel()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # No thread is inside a method now (each would hold a reference).
        h = getattr(self, "_handle", NULL)
        if h != NULL and self._pid == os.getpid():
            self._handle = NULL
            _free(lib.lively_subscription_free, h)


_view_is_up = _gil.view_is_up
_view_is_up_th = _gil.view_is_up_by_type_host
_c_bool = ctypes.c_bool
_byref = ctypes.byref

#: How long one wait inside `View.sync` lasts: `close()` from another
#: thread ends a waiting `sync` within this.
_SYNC_SLICE_MS = 200


class View:
    """A local copy of every service in the client's namespace: `is_up`,
    `get`, `list` answer without a round trip (about a microsecond).

    `is_up`, `revision` and `is_connected` keep the GIL (they take about
    100 ns; see `os_lively._gil`); `get`, `list` and `sync` release it.
    `close()` may be called from any thread, while others use the view:
    their calls raise `ClosedError` (a waiting `sync` within 0.2 s, or
    within the request timeout while etcd does not answer), and
    the C view is freed only once no thread is inside a call (when the
    object is garbage-collected)."""

    def __init__(self, client: Client, stale_after: Optional[Seconds]) -> None:
        self._client = client
        if stale_after is None:
            self._stale_ms = 0
        elif stale_after == float("inf"):
            self._stale_ms = UINT64_MAX
        else:
            self._stale_ms = _check.millis(stale_after, "stale_after", minimum=0.0, above_minimum=True,
                                           maximum=MAX_TIMEOUT * 365)
        self._pid = os.getpid()
        self._closed = False
        self._set_handle(NULL)
        self._set_handle(self._new())
        _handles.add(self)

    def _set_handle(self, h) -> None:
        self._handle = h
        self._addr = _gil.address(h)  # what the GIL-holding (ctypes) calls pass

    def _new(self):
        out = ffi.new("const lively_view **")
        self._client._call("view", lib.lively_view_new, self._stale_ms, out)
        return out[0]

    def _after_fork(self) -> None:
        self._set_handle(NULL)

    def _closed_error(self, what: str) -> ClosedError:
        return ClosedError("%s: the view is closed" % what, _CLOSED)

    def _retry(self, rc: int, what: str, fn, *args):
        """After a failed call: in a forked child, load a view of the
        child's own and call again; else raise."""
        if self._closed:
            raise self._closed_error(what)
        if rc == _NULL_PARAMETER and self._handle == NULL and self._pid != os.getpid():
            self._pid = os.getpid()
            self._set_handle(self._new())
            rc = fn(self._addr if fn in (_view_is_up, _view_is_up_th) else self._handle, *args)
            if rc == 0:
                return
        if rc == _NULL_PARAMETER and self._handle == NULL:
            raise self._closed_error(what)
        fail(rc, what)

    def is_up(self, uuid: Optional[str] = None, *, service_type: Optional[str] = None,
              host: Optional[str] = None) -> bool:
        """Whether a service is effectively UP as of `revision()`."""
        if self._closed:
            raise self._closed_error("view is_up")
        out = _c_bool()
        if type(uuid) is str and service_type is None and host is None and "\0" not in uuid:
            # The hot path (about half a microsecond): a plain str uuid.
            try:
                b = uuid.encode()
            except UnicodeEncodeError:
                b = _check.text(uuid, "uuid")  # raises, naming the argument
            rc = _view_is_up(self._addr, b, _byref(out))
            if rc:
                self._retry(rc, "view is_up %s" % uuid, _view_is_up, b, _byref(out))
            return out.value
        _check.one_of(uuid, service_type, host, "is_up")
        if uuid is not None:
            b = _check.text(uuid, "uuid")
            rc = _view_is_up(self._addr, b, _byref(out))
            if rc:
                self._retry(rc, "view is_up", _view_is_up, b, _byref(out))
            return out.value
        t, h = _check.text(service_type, "service_type"), _check.text(host, "host")
        rc = _view_is_up_th(self._addr, t, h, _byref(out))
        if rc:
            self._retry(rc, "view is_up %s@%s" % (service_type, host), _view_is_up_th, t, h, _byref(out))
        return out.value

    def get(self, uuid: str) -> ServiceInfo:
        """A service's record and liveness; `NotFoundError` if unknown."""
        if self._closed:
            raise self._closed_error("view get")
        out = ffi.new("lively_service_info **")
        b = _check.text(uuid, "uuid")
        rc = lib.lively_view_get(self._handle, b, out)
        if rc:
            self._retry(rc, "view get %s" % uuid, lib.lively_view_get, b, out)
        info = ffi.gc(out[0], lib.lively_service_info_free)
        return _convert.service_info(info.service, info.up)

    def list(self, *, uuid: Optional[str] = None, service_type: Optional[str] = None,
             host: Optional[str] = None, region: Optional[str] = None,
             status: Union[Status, str, None] = None) -> List[ServiceInfo]:
        """Services matching every filter given (`status` is the effective
        status)."""
        if self._closed:
            raise self._closed_error("view list")
        f, keep = _filter(uuid, service_type, host, region, status)
        out = ffi.new("lively_service_list **")
        rc = lib.lively_view_list(self._handle, f, out)
        if rc:
            self._retry(rc, "view list", lib.lively_view_list, f, out)
        return _convert.service_list(ffi.gc(out[0], lib.lively_service_list_free))

    def revision(self) -> int:
        """The etcd revision the view reflects."""
        if self._closed:
            raise self._closed_error("view revision")
        return _gil.view_revision(self._addr)

    def is_connected(self) -> bool:
        """True while the view's watch is connected and caught up."""
        if self._closed:
            raise self._closed_error("view is_connected")
        return bool(_gil.view_is_connected(self._addr))

    def sync(self, timeout: Seconds = 5.0) -> None:
        """Read-your-writes: waits until the view reflects etcd's current
        revision (`TimeoutError` if it does not within `timeout`)."""
        total = _check.millis(timeout, "timeout", maximum=MAX_TIMEOUT)
        # A deadline, not a count of slices: a slice may outlast its length
        # (its round trip to etcd is bounded by the request timeout).
        deadline = time.monotonic() + total / 1000.0
        while True:
            if self._closed:
                raise self._closed_error("view sync")
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            # Waits in slices, so a close() on another thread ends the wait.
            rc = lib.lively_view_sync(self._handle, min(_SYNC_SLICE_MS, remaining))
            if rc == 0:
                return
            if self._closed:
                raise self._closed_error("view sync")
            if rc == _TIMEOUT:
                if time.monotonic() < deadline:
                    continue
                # The library's message would name the last slice's time.
                raise error_for(rc, "view sync: the view did not reach etcd's current revision within %r s"
                                % (timeout,))
            self._retry(rc, "view sync", lib.lively_view_sync, max(1, remaining))
            return

    def close(self) -> None:
        """Ends the view: later calls, and calls other threads are making,
        raise `ClosedError`. Safe from any thread; the C view is freed once
        no thread uses it (when the object is garbage-collected)."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "View":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # No thread is inside a method now (each would hold a reference).
        h = getattr(self, "_handle", NULL)
        if h != NULL and self._pid == os.getpid():
            self._set_handle(NULL)
            _free(lib.lively_view_free, h)


def _free(free, handle) -> None:
    """Frees a C handle (one place, so tests can watch when it happens)."""
    free(handle)


class _ExitHook:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_EXIT_HOOK = _ExitHook()


def _finalize_at_child_exit(_hook) -> None:
    # Runs in a multiprocessing child, after multiprocessing cleared the
    # finalizers it inherited; the child leaves with os._exit() after
    # running these, never the atexit hooks.
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _at_exit, exitpriority=0)


def _after_fork_in_child() -> None:
    for obj in list(_handles):
        obj._after_fork()
    _pending.clear()
    _running.clear()  # the parent's callback threads do not exist here
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # A multiprocessing child ends with os._exit(): close what it
        # connected when it exits, as atexit does for a normal process.
        mp_util.register_after_fork(_EXIT_HOOK, _finalize_at_child_exit)


def _wake_subscriptions() -> None:
    """At interpreter shutdown, before threads are joined: end every
    subscription, so a (non-daemon) thread iterating one returns and the
    process can exit."""
    for obj in list(_handles):
        if isinstance(obj, Subscription) and obj._pid == os.getpid():
            try:
                obj.cancel()
            except Exception:
                pass


def _at_exit() -> None:
    # Stop callbacks before the interpreter goes away, then revoke leases so
    # this process's services go DOWN at once rather than after the TTL.
    for obj in list(_handles):
        if isinstance(obj, Subscription):
            try:
                obj.cancel()
            except Exception:
                pass
    for c in list(_clients):
        try:
            c.close()
        except Exception as e:  # at exit, a failed revoke only delays DOWN by one TTL
            _log.warning("closing a client at exit: %s", e)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
# Runs before the interpreter joins non-daemon threads (concurrent.futures
# uses the same hook); atexit hooks run only after that join.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_wake_subscriptions)
