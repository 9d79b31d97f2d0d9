"""The original os-lively's configuration object, drop-in.

Each attribute comes from the keyword override, else the `OSLIVELY_*`
environment variable of the same name, else the original's default.
Values from the environment are strings (`'2379'` works). Attributes may
be changed after construction; the next call uses them (a different host,
port, timeout, namespace or status_ttl selects another cached client).
"""

import os

DEFAULT_DEBUG = False
DEFAULT_ETCD_HOST = "localhost"
DEFAULT_ETCD_PORT = 2379
DEFAULT_ETCD_CONNECT_TIMEOUT = 5
DEFAULT_ETCD_KEY_NAMESPACE = ""
DEFAULT_STATUS_TTL = 60
#: The original's lower bound for `status_ttl`.
MIN_STATUS_TTL = 5


class Conf(object):
    """Configuration for os_lively; unknown overrides are accepted (and kept
    as attributes).

    `status_ttl` (seconds) is raised to at least `MIN_STATUS_TTL` (5), as
    the original library did: `Conf(status_ttl=3).status_ttl == 5`. It is
    both the lease TTL (how soon a dead process's services go DOWN) and
    the heartbeat deadline of `service.update()` (how often a live one
    must call it). For a shorter TTL use the Pythonic `os_lively.Client`
    (`status_ttl` from 1 s; etcd itself grants at least about 2 s).
    """

    def __init__(self, **overrides):
        def pick(name, default):
            return overrides.get(name, os.environ.get("OSLIVELY_" + name.upper(), default))

        for name, value in overrides.items():
            setattr(self, name, value)
        self.debug = pick("debug", DEFAULT_DEBUG)
        self.etcd_host = pick("etcd_host", DEFAULT_ETCD_HOST)
        self.etcd_port = pick("etcd_port", DEFAULT_ETCD_PORT)
        self.etcd_connect_timeout = pick("etcd_connect_timeout", DEFAULT_ETCD_CONNECT_TIMEOUT)
        self.etcd_key_namespace = pick("etcd_key_namespace", DEFAULT_ETCD_KEY_NAMESPACE)
        self.status_ttl = pick("status_ttl", DEFAULT_STATUS_TTL)
        try:
            if float(self.status_ttl) < MIN_STATUS_TTL:
                self.status_ttl = MIN_STATUS_TTL
        except (TypeError, ValueError):
            pass  # reported when a call uses it

    def __repr__(self):
        return "Conf(etcd_host=%r, etcd_port=%r, etcd_connect_timeout=%r, etcd_key_namespace=%r, status_ttl=%r)" % (
            self.etcd_host, self.etcd_port, self.etcd_connect_timeout, self.etcd_key_namespace, self.status_ttl)


def _number(conf, name, kind):
    value = getattr(conf, name)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError("os_lively conf: %s must be a number, not %r" % (name, value)) from None


def status_ttl(conf) -> int:
    """`conf.status_ttl` in whole seconds, at least MIN_STATUS_TTL."""
    return max(MIN_STATUS_TTL, int(_number(conf, "status_ttl", float)))


def connection_key(conf):
    """The settings that select a client: one client per distinct value,
    cached for the life of the process. `status_ttl` is one of them: it is
    the client's lease TTL, so a Conf with another TTL gets a client (and
    a lease) of its own."""
    from . import _check

    host = str(conf.etcd_host)
    _check.text(host, "conf.etcd_host")
    port = _number(conf, "etcd_port", int)
    timeout = _number(conf, "etcd_connect_timeout", float)
    namespace = str(conf.etcd_key_namespace or "")
    _check.text(namespace, "conf.etcd_key_namespace")
    return host, port, timeout, namespace, status_ttl(conf)
