"""Plain Python values for what the library returns: statuses, records,
events. Built from the C structs by `_convert`; no liveness logic here."""

import enum
from dataclasses import dataclass
from typing import Optional


class _Named(enum.IntEnum):
    """An IntEnum that prints as its name (`print(Status.UP)` -> `UP`), as
    Python's IntEnum did before 3.11; it still compares equal to its
    number."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)


class Status(_Named):
    """A service's status (numbers as in the protobuf record: UP is 0).

    A Status has no truth value: `bool(Status.UP)` raises TypeError, since
    as an int UP (0) would be false. Compare (`info.status == Status.UP`)
    or use `ServiceInfo.up`. Where a status is expected, pass a Status or
    "UP"/"DOWN", not a bare 0 or 1 (refused: 0 is UP, not "false").
    """

    UP = 0
    DOWN = 1

    def __bool__(self) -> bool:
        raise TypeError(
            "a Status has no truth value (Status.UP is 0, so it would be false): "
            "compare it, `status == Status.UP`, or use ServiceInfo.up"
        )


class EventKind(_Named):
    """What happened to a service (`lively_event_kind`)."""

    EXISTING = 0
    REGISTERED = 1
    UP = 2
    DOWN = 3
    UPDATED = 4
    REMOVED = 5
    RESYNC = 6


class DownReason(_Named):
    """Why a service went DOWN (`lively_down_reason`; NONE for other events)."""

    NONE = 0
    FORCED = 1
    EXPIRED = 2
    DELETED = 3
    MISSED = 4
    MOVED = 5
    LIFTED = 6
    CLOSED = 7
    DECLARED = 8


@dataclass(frozen=True)
class ServiceInfo:
    """A service and its liveness now.

    `status` is the *effective* status, the one `list(status=...)` filters
    on and `is_up()` answers: UP only while the record says UP and its
    owner keeps it alive (its process lives and, with a heartbeat
    deadline, checks in). `record_status` is what the stored record says.
    `down_reason` says why a DOWN service is down (None while UP):
    `FORCED` an operator's `down()` holds it (`forced_down`), `MISSED` its
    owner missed the heartbeat deadline (`heartbeat_missed`), `EXPIRED`
    its record says UP but no living process keeps it (crashed, or closed
    without deregistering), `NONE` its owner registered it DOWN.
    `heartbeat_ms` is its heartbeat deadline (0: none); the
    `maintenance_*` fields are the operator's window and note (0 / "":
    none). `up` is `status == Status.UP`.
    """

    uuid: str
    service_type: str
    host: str
    status: Status
    region: str
    maintenance_start: int
    maintenance_end: int
    maintenance_note: str
    up: bool
    record_status: Status = Status.UP
    forced_down: bool = False
    heartbeat_ms: int = 0
    heartbeat_missed: bool = False
    down_reason: Optional[DownReason] = None


@dataclass(frozen=True)
class Event:
    """One change of one service, in etcd revision order.

    `old_status`/`new_status` are the effective statuses before and after
    (None when the service did not exist / no longer exists); `service` is
    the record after the change (before it, for REMOVED), None for RESYNC.
    """

    kind: EventKind
    reason: DownReason
    uuid: str
    service_type: str
    host: str
    region: str
    old_status: Optional[Status]
    new_status: Optional[Status]
    service: Optional[ServiceInfo]
    revision: int
