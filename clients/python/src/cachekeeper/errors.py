"""Errors raised by the cachekeeper package.

Every refusal of bad input is an :class:`InvalidPayload` (a ``ValueError``)
whose message says, in one line, what is wrong and how to fix it; nothing
was sent to Redis. A :class:`FieldError` names the field, as the Go client's
``tasks.FieldError`` does.
"""

from __future__ import annotations

from typing import Sequence


class CachekeeperError(Exception):
    """Base class of every error of this package."""


class InvalidPayload(CachekeeperError, ValueError):
    """A job, an option or a setting was refused; nothing was sent."""


class FieldError(InvalidPayload):
    """One field of one kind is wrong: ``cache:warm: field "ids": must not be empty``."""

    def __init__(self, kind: str, field: str, msg: str) -> None:
        self.kind = kind
        self.field = field
        self.msg = msg
        super().__init__('%s: field "%s": %s' % (kind, field, msg))


class UnknownName(InvalidPayload):
    """A queue or cache the workers do not serve (``queues=`` / ``caches=``)."""

    def __init__(self, what: str, name: str, known: Sequence[str]) -> None:
        self.what = what
        self.name = name
        self.known = sorted(set(known))
        if what == "queue":
            text = 'queue "%s" is not served by the workers (queues: %s)' % (name, ", ".join(self.known))
        else:
            have = "caches: " + ", ".join(self.known) if self.known else "none are configured"
            text = 'cache "%s" is not configured (%s)' % (name, have)
        super().__init__(text)


class FunctionMissing(CachekeeperError):
    """The Redis function the call needs is not loaded: no cachekeeper worker
    of a recent enough version has started against this Redis."""


class LeaseTimeout(CachekeeperError):
    """Another process holds the lease on a key and did not fill it in time."""
