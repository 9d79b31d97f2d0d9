"""A real etcd for the tests: binary from ETCD_BIN or PATH, free loopback
ports, a temporary data directory; each test gets its own key namespace."""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid as uuidlib

import pytest

import os_lively
import os_lively._dropin

requires_heartbeat = pytest.mark.skipif(
    not os_lively.features()["heartbeat"],
    reason="the loaded library has no heartbeat deadlines (lively_client_heartbeat); "
    "enable by building from a branch with the heartbeat-deadline C API",
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    def __init__(self):
        binary = os.environ.get("ETCD_BIN") or shutil.which("etcd")
        if not binary:
            pytest.fail("no etcd binary: set ETCD_BIN or put etcd on PATH (scripts/setup.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="os-lively-py-etcd-")
        self.port = _free_port()
        peer = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(self.dir, "etcd.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--name=py", "--data-dir=%s" % os.path.join(self.dir, "data"),
             "--listen-client-urls=%s" % self.url, "--advertise-client-urls=%s" % self.url,
             "--listen-peer-urls=http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls=http://127.0.0.1:%d" % peer,
             "--initial-cluster=py=http://127.0.0.1:%d" % peer,
             "--heartbeat-interval=50", "--election-timeout=500",
             "--logger=zap", "--log-level=warn", "--log-outputs=stderr"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") in ("true", True):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("etcd did not start; log in %s" % self.dir)
            time.sleep(0.05)

    def _post(self, path, body):
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def get(self, key):
        """The raw value of `key` (bytes), or None: through etcd's own
        gateway, independent of the library under test."""
        kvs = self._post("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs")
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def mod_revision(self, key):
        """The revision `key` was last written at (0 if absent), read
        through etcd's gateway."""
        kvs = self._post("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs")
        return int(kvs[0].get("mod_revision", 0)) if kvs else 0

    def keys(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self._post("/v3/kv/range", {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode(), "keys_only": True,
        }).get("kvs", [])
        return sorted(base64.b64decode(kv["key"]).decode() for kv in kvs)

    def put(self, key, value=b""):
        self._post("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                  "value": base64.b64encode(value).decode()})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd():
    e = Etcd()
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def _close_cached_clients():
    """Each test starts without the drop-in's cached clients (and leaves none
    running against an etcd that the session stops)."""
    yield
    os_lively._dropin.close_all()


@pytest.fixture
def ns():
    return "py-" + uuidlib.uuid4().hex[:12]


@pytest.fixture
def conf(etcd, ns):
    from os_lively import conf as conf_mod

    return conf_mod.Conf(etcd_host="127.0.0.1", etcd_port=etcd.port, etcd_key_namespace=ns, status_ttl=60)


@pytest.fixture
def env(etcd, ns, monkeypatch):
    """The OSLIVELY_* environment pointing at the test's etcd and namespace."""
    monkeypatch.setenv("OSLIVELY_ETCD_HOST", "127.0.0.1")
    monkeypatch.setenv("OSLIVELY_ETCD_PORT", str(etcd.port))
    monkeypatch.setenv("OSLIVELY_ETCD_KEY_NAMESPACE", ns)
    monkeypatch.delenv("OSLIVELY_ETCD_ENDPOINTS", raising=False)
    monkeypatch.delenv("OSLIVELY_STATUS_TTL", raising=False)


def wait_for(predicate, timeout, what):
    """Polls `predicate` until true; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(0.02)
