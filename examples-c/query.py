#!/usr/bin/env python3
"""Query os-lively from Python through ctypes (no compiler needed).

    query.py [--lib PATH] version
    query.py [--lib PATH] is-up UUID
    query.py [--lib PATH] is-up-type-host TYPE HOST
    query.py [--lib PATH] list [TYPE]
    query.py [--lib PATH] watch SECONDS        # pull subscription

Settings come from the OSLIVELY_* environment variables. The library is
PATH, else $LIVELY_LIB, else libos_lively.so.0 from the loader path.
Exit status: 0 ok (is-up: UP), 1 DOWN, 2 error.
"""

import ctypes
import os
import sys
from ctypes import (POINTER, Structure, c_bool, c_char_p, c_int32, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p, sizeof)


class Service(Structure):
    """lively_service_record: a record as the library returns it."""
    _fields_ = [("uuid", c_char_p), ("service_type", c_char_p), ("host", c_char_p),
                ("status", c_uint32), ("region", c_char_p), ("maintenance_start", c_uint64),
                ("maintenance_end", c_uint64), ("maintenance_note", c_char_p),
                ("heartbeat_ms", c_uint64), ("heartbeat_missed", c_bool),
                ("forced_down", c_bool), ("exclusive", c_bool)]


class ServiceInfo(Structure):
    _fields_ = [("service", Service), ("up", c_bool)]


class ServiceList(Structure):
    _fields_ = [("items", POINTER(ServiceInfo)), ("len", c_size_t)]


class Sized(Structure):
    """A struct a caller fills: struct_size first, set on construction
    (the header's LIVELY_*_INIT)."""

    def __init__(self, **fields):
        super().__init__(struct_size=sizeof(self), **fields)


class Filter(Sized):
    _fields_ = [("struct_size", c_size_t), ("uuid", c_char_p), ("service_type", c_char_p), ("host", c_char_p),
                ("region", c_char_p), ("has_status", c_bool), ("status", c_uint32)]


class SubscribeOptions(Sized):
    _fields_ = [("struct_size", c_size_t), ("snapshot", c_bool), ("queue_capacity", c_size_t)]


class Event(Structure):
    _fields_ = [("kind", c_uint32), ("reason", c_uint32), ("uuid", c_char_p),
                ("service_type", c_char_p), ("host", c_char_p), ("region", c_char_p),
                ("old_status", c_int32), ("new_status", c_int32),
                ("service", POINTER(Service)), ("revision", c_int64)]


EVENT_KINDS = ["EXISTING", "REGISTERED", "UP", "DOWN", "UPDATED", "REMOVED", "RESYNC"]
REASONS = ["-", "forced", "expired", "deleted", "missed", "moved", "lifted", "closed", "declared"]


class LivelyError(Exception):
    def __init__(self, lib, code, func):
        self.code = code
        super().__init__("%s: %s (%s)" % (func.__name__, lib.lively_result_str(code).decode(),
                                          lib.lively_last_error().decode()))


def load(path=None):
    lib = ctypes.CDLL(path or os.environ.get("LIVELY_LIB") or "libos_lively.so.0")

    def errcheck(result, func, args):
        if result != 0:
            raise LivelyError(lib, result, func)
        return args

    def fn(name, args, restype=c_uint32, check=True):
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = restype
        if check and restype is c_uint32:
            f.errcheck = errcheck
        return f

    fn("lively_result_str", [c_uint32], c_char_p, check=False)
    fn("lively_last_error", [], c_char_p)
    fn("lively_version", [], c_char_p)
    fn("lively_version_number", [], c_uint32, check=False)
    fn("lively_config_from_env", [POINTER(c_void_p)])
    fn("lively_config_free", [c_void_p], None)
    fn("lively_client_connect", [c_void_p, POINTER(c_void_p)])
    fn("lively_client_free", [c_void_p], None)
    fn("lively_client_is_up", [c_void_p, c_char_p, POINTER(c_bool)])
    fn("lively_client_is_up_by_type_host", [c_void_p, c_char_p, c_char_p, POINTER(c_bool)])
    fn("lively_client_list", [c_void_p, POINTER(Filter), POINTER(POINTER(ServiceList))])
    fn("lively_service_list_free", [POINTER(ServiceList)], None)
    fn("lively_client_subscribe_pull",
       [c_void_p, POINTER(Filter), POINTER(SubscribeOptions), POINTER(c_void_p)])
    fn("lively_subscription_next", [c_void_p, c_uint64, POINTER(POINTER(Event))])
    fn("lively_event_free", [POINTER(Event)], None)
    fn("lively_subscription_free", [c_void_p], None)
    return lib


class Client:
    """A connection; close() (or the with-block) frees it."""

    def __init__(self, lib):
        self.lib = lib
        cfg = c_void_p()
        lib.lively_config_from_env(ctypes.byref(cfg))
        try:
            self.handle = c_void_p()
            lib.lively_client_connect(cfg, ctypes.byref(self.handle))
        finally:
            lib.lively_config_free(cfg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.handle:
            self.lib.lively_client_free(self.handle)
            self.handle = None

    def is_up(self, uuid):
        up = c_bool()
        self.lib.lively_client_is_up(self.handle, uuid.encode(), ctypes.byref(up))
        return up.value

    def is_up_by_type_host(self, service_type, host):
        up = c_bool()
        self.lib.lively_client_is_up_by_type_host(self.handle, service_type.encode(),
                                                  host.encode(), ctypes.byref(up))
        return up.value

    def list(self, service_type=None):
        f = Filter()
        if service_type:
            f.service_type = service_type.encode()
        out = POINTER(ServiceList)()
        self.lib.lively_client_list(self.handle, ctypes.byref(f), ctypes.byref(out))
        try:
            items = out.contents.items
            return [(items[i].service.uuid.decode(), items[i].service.service_type.decode(),
                     items[i].service.host.decode(), items[i].up)
                    for i in range(out.contents.len)]
        finally:
            self.lib.lively_service_list_free(out)

    def watch(self, seconds):
        """Yields (kind, reason, uuid, type, host) for `seconds`."""
        import time
        opts = SubscribeOptions(snapshot=True, queue_capacity=0)
        sub = c_void_p()
        self.lib.lively_client_subscribe_pull(self.handle, None, ctypes.byref(opts),
                                              ctypes.byref(sub))
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                ev = POINTER(Event)()
                self.lib.lively_subscription_next(sub, 200, ctypes.byref(ev))
                if not ev:
                    continue
                e = ev.contents
                item = (EVENT_KINDS[e.kind], REASONS[e.reason], e.uuid.decode(),
                        e.service_type.decode(), e.host.decode())
                self.lib.lively_event_free(ev)
                yield item
        finally:
            self.lib.lively_subscription_free(sub)


def main(argv):
    lib_path = None
    if len(argv) > 2 and argv[1] == "--lib":
        lib_path = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    lib = load(lib_path)
    cmd, args = argv[1], argv[2:]
    if cmd == "version":
        n = lib.lively_version_number()
        print("%s %d.%d.%d" % (lib.lively_version().decode(), n >> 16, (n >> 8) & 0xff, n & 0xff))
        return 0
    try:
        with Client(lib) as client:
            if cmd == "is-up":
                up = client.is_up(args[0])
            elif cmd == "is-up-type-host":
                up = client.is_up_by_type_host(args[0], args[1])
            elif cmd == "list":
                for uuid, t, h, up in client.list(args[0] if args else None):
                    print(uuid, t, h, "up" if up else "down")
                return 0
            elif cmd == "watch":
                for event in client.watch(float(args[0])):
                    print(*event, flush=True)
                return 0
            else:
                print("unknown command " + cmd, file=sys.stderr)
                return 2
            print("up" if up else "down")
            return 0 if up else 1
    except LivelyError as e:
        print("query.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
