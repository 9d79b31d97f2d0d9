"""Clients for the drop-in API: one per distinct connection setting,
cached for the life of the process and closed at exit (revoking its lease,
so its services go DOWN at once)."""

import os
import threading

from . import conf as _conf
from .client import Client

_cache = {}
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Another thread of the parent may have held the lock at fork time. The
    # cached clients themselves reconnect on their next call.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def client_for(conf) -> Client:
    if conf is None:
        conf = _conf.Conf()
    key = _conf.connection_key(conf)
    c = _cache.get(key)
    if c is not None and not c.closed:
        return c
    with _lock:
        c = _cache.get(key)
        if c is None or c.closed:
            host, port, timeout, namespace, ttl = key
            if ":" in host and not host.startswith("["):
                host = "[%s]" % host  # IPv6 literal
            c = Client(
                "%s:%d" % (host, port),
                namespace=namespace,
                # The lease's TTL: how soon a dead process's services go DOWN.
                status_ttl=ttl,
                connect_timeout=timeout,
            )
            _cache[key] = c
    return c


def close_all() -> None:
    """Closes every cached client (their services go DOWN at once); the next
    call connects again. Used by tests; the process's exit does the same."""
    with _lock:
        clients = list(_cache.values())
        _cache.clear()
    for c in clients:
        c.close()
