"""os-lively: service liveness on etcd v3.

Two APIs over the same library (loaded through its C ABI):

- Pythonic: `os_lively.Client` (`Client.from_env()`), with `update`,
  `heartbeat`, `is_up`, `get`, `list`, `down`, `up`, `delete`,
  `subscribe` and `view`; errors are `os_lively.LivelyError` subclasses.
- The original os-lively's, drop-in: `os_lively.conf.Conf`,
  `os_lively.service` (`update`, `is_up`, `get_one`, `get_many`, `delete`,
  `down`, `notify`, `Service`, `Status`), and `service_update`,
  `service_is_up`, `service_notify` here.
"""

from . import errors
from ._ffi import HAS_HEARTBEAT, HAS_UP, ffi, lib
from .client import Client, Subscription, View
from .errors import *  # noqa: F401,F403 (the exception classes)
from .errors import LivelyError
from .logs import route_logs_to_python
from .model import DownReason, Event, EventKind, ServiceInfo, Status

__version__ = ffi.string(lib.lively_version()).decode()

__all__ = [
    "Client", "View", "Subscription", "Status", "EventKind", "DownReason", "ServiceInfo",
    "Event", "errors", "features", "library_version", "route_logs_to_python",
    "service_update", "service_is_up", "service_notify",
] + errors.__all__


def library_version() -> str:
    """The loaded libos_lively's version string."""
    return ffi.string(lib.lively_version()).decode()


def features() -> dict:
    """Which optional C functions the loaded library has: `heartbeat`
    (heartbeat deadlines; without it the drop-in `update()` keeps a service
    UP while its process lives, not only while it keeps calling) and `up`
    (lifting a forced DOWN)."""
    return {"heartbeat": HAS_HEARTBEAT, "up": HAS_UP}


def service_update(conf, service):
    """The original README's spelling of `os_lively.service.update`."""
    from . import service as _service

    return _service.update(conf, service)


def service_is_up(conf=None, *, uuid=None, service_type=None, host=None, **filters):
    """The original README's spelling of `os_lively.service.is_up`, by
    `uuid=` or by `service_type=` (or `type=`) and `host=`. Without a conf,
    settings come from the OSLIVELY_* environment."""
    from . import service as _service

    if service_type is not None:
        filters["type"] = service_type
    if uuid is not None:
        filters["uuid"] = uuid
    if host is not None:
        filters["host"] = host
    return _service.is_up(conf, **filters)


def service_notify(conf=None, *, service_type=None, **filters):
    """The original README's spelling of `os_lively.service.notify`."""
    from . import service as _service

    if service_type is not None:
        filters["type"] = service_type
    return _service.notify(conf, **filters)
