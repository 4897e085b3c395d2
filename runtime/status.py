"""A container's status, and which operations each status allows.

Every operation asks the status the same way (``require(status, "pause")``)
instead of re-deriving the rules.
"""

from collections import namedtuple
from enum import IntEnum

from .errors import InvalidState


class Status(IntEnum):
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    DELETED = 4
    PAUSED = 5

    @property
    def oci(self):
        """The lower-case name OCI tools print ("created", "running" ...)."""
        return self.name.lower()

    @classmethod
    def from_oci(cls, name):
        return cls[name.upper()]


# operation -> statuses in which it is allowed
ALLOWED = {
    "start": {Status.CREATED},
    "pause": {Status.RUNNING, Status.CREATED},
    "resume": {Status.PAUSED},
    "kill": {Status.CREATED, Status.RUNNING, Status.PAUSED},
    "exec": {Status.CREATED, Status.RUNNING},
    "checkpoint": {Status.RUNNING, Status.PAUSED},
    "delete": {Status.CREATED, Status.STOPPED},
    "delete_force": {Status.CREATED, Status.RUNNING, Status.PAUSED, Status.STOPPED},
    "update": {Status.CREATED, Status.RUNNING, Status.PAUSED},
    "stats": {Status.CREATED, Status.RUNNING, Status.PAUSED},
    "pty": {Status.CREATED, Status.RUNNING, Status.PAUSED},
}

WHY = {
    "kill": "container not running",
    "exec": "cannot exec in a {status} container",
    "delete": "cannot delete a {status} container without force",
}


def can(status, op):
    return status in ALLOWED[op]


def require(status, op, cid=""):
    """Raise InvalidState naming the current status unless ``op`` is allowed."""
    if status in ALLOWED[op]:
        return
    why = WHY.get(op, "cannot {op} a {status} container").format(op=op, status=status.oci)
    prefix = f"container {cid}: " if cid else ""
    raise InvalidState(f"{prefix}{why} (status: {status.oci})", status)


class State(namedtuple("State", "status pid")):
    """status: a Status; pid: the init's host pid (0 when stopped)."""
    __slots__ = ()
