"""The library's logs go through Python's `logging` by default, with one
prefix (issue 24, item 4); error messages name the call once and say the
cause (item 6)."""

import subprocess
import sys

import pytest

import os_lively
from os_lively import Client
from conftest import Etcd


def run_script(body, etcd, ns):
    script = "URL = %r\nNS = %r\n" % (etcd.url, ns) + body
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


WAIT_FOR_WARNING = """
import logging, threading
got = threading.Event()

def seen(record):
    if record.levelno == logging.WARNING:
        got.set()
    return True

logging.getLogger("os_lively.lib").addFilter(seen)
import os_lively
with os_lively.Client(URL, namespace=NS) as c:
    c.list()
    got.wait(15)
print("GOT" if got.is_set() else "MISSING", flush=True)
"""


def test_logs_reach_logging_by_default_with_one_prefix(etcd, ns):
    """With logging configured (basicConfig), the library's warning about a
    key it cannot decode is a record of `os_lively.lib`, without a second
    `os-lively` prefix, and nothing goes to stderr by itself."""
    etcd.put("/%s/services/by-uuid/not-a-uuid" % ns, b"garbage")
    body = ("import logging, sys\n"
            "logging.basicConfig(stream=sys.stdout, format='%(name)s|%(levelname)s|%(message)s')\n"
            + WAIT_FOR_WARNING)
    out = run_script(body, etcd, ns)
    assert "GOT" in out.stdout, out
    lines = [line for line in out.stdout.splitlines() if line.startswith("os_lively.lib|WARNING|")]
    assert lines, out.stdout
    for line in lines:
        message = line.split("|", 2)[2]
        assert not message.lower().startswith("os-lively"), line
    assert "os-lively" not in out.stderr, out.stderr


def test_unconfigured_logging_prints_nothing(etcd, ns):
    """A program that configures no logging sees nothing from the library
    (NullHandler on the package, as the logging HOWTO advises), though the
    warning was logged."""
    etcd.put("/%s/services/by-uuid/not-a-uuid" % ns, b"garbage")
    out = run_script(WAIT_FOR_WARNING, etcd, ns)
    assert "GOT" in out.stdout, out
    assert out.stderr == "", out.stderr


def _no_repeats(message):
    parts = message.split(": ")
    for a, b in zip(parts, parts[1:]):
        assert a != b, "repeated %r in %r" % (a, message)
    for verb in ("is_up", "close", "update"):
        assert message.count(verb + ":") + message.count(verb + " ") <= 1, message


def test_errors_name_the_call_once_with_the_cause(ns):
    own = Etcd()
    try:
        c = Client(own.url, namespace=ns, status_ttl=5, request_timeout=2, connect_timeout=2)
        uuid = c.update("svc", "h")
    finally:
        own.stop()  # SIGKILL: the connection is refused from now on
    with pytest.raises((os_lively.UnavailableError, os_lively.TimeoutError)) as e:
        c.is_up(uuid)
    text = str(e.value)
    _no_repeats(text)
    assert ("is_up %s" % uuid) in text, text
    if isinstance(e.value, os_lively.UnavailableError):
        assert "gRPC status" in text or "transport error" in text, text
        assert "refused" in text.lower() or "connect" in text.lower(), text
    with pytest.raises((os_lively.UnavailableError, os_lively.TimeoutError)) as e:
        c.update("svc", "h2")
    _no_repeats(str(e.value))
    try:
        c.close()
    except os_lively.LivelyError as err:
        _no_repeats(str(err))
