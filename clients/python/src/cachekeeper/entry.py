"""The inbox entry: the one place its wire format is built.

An entry is one JSON object a producer LPUSHes onto the worker's inbox list::

    {"kind": "cache:invalidate", "args": {"cache": "user", "ids": ["1", "2"]},
     "options": {"queue": "critical", "process_in": "30s", "task_id": "user-1-v7"}}

The worker's inbox bridge (Go, ``internal/inbox``) parses it with unknown
fields refused; a test in the Go tree builds entries with this module and
parses them with that parser, so the two agree.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, Optional, Sequence, Tuple

from . import _validate as v
from ._keys import Rule
from .errors import FieldError, InvalidPayload, UnknownName
from .kinds import Kind


class Options:
    """Per-job settings of an entry; every field is optional.

    queue:      a queue the workers serve, instead of the kind's default.
    task_id:    names the job; a second job with the same id is dropped as a
                duplicate while the queue still knows the first.
    process_in: delay (seconds, ``timedelta`` or ``"30s"``).
    process_at: run no earlier than this time (a timezone-aware ``datetime``).
    max_retry:  the retry budget, instead of the kind's.
    timeout:    bound of one run, instead of the kind's.
    retention:  keep the finished job (and its result) this long.
    traceparent, tracestate: the W3C Trace Context the job's spans join
                (by default the producer takes the current OpenTelemetry
                span's, when opentelemetry is installed).

    A ``cache:warm`` entry with no options is coalesced by the worker with the
    other warms of its cache (cheap); give options to make it a job of its own.
    """

    __slots__ = ("queue", "task_id", "process_in", "process_at", "max_retry", "timeout", "retention", "traceparent", "tracestate")

    def __init__(
        self,
        queue: Optional[str] = None,
        task_id: Optional[str] = None,
        process_in: Optional[v.Duration] = None,
        process_at: Optional[datetime.datetime] = None,
        max_retry: Optional[int] = None,
        timeout: Optional[v.Duration] = None,
        retention: Optional[v.Duration] = None,
        traceparent: Optional[str] = None,
        tracestate: Optional[str] = None,
    ) -> None:
        self.queue = queue
        self.task_id = task_id
        self.process_in = process_in
        self.process_at = process_at
        self.max_retry = max_retry
        self.timeout = timeout
        self.retention = retention
        self.traceparent = traceparent
        self.tracestate = tracestate

    def wire(self, kind: str) -> Dict[str, Any]:
        """The options as the entry carries them; raises FieldError naming
        ``options.<field>``."""
        out: Dict[str, Any] = {}
        if self.queue is not None:
            q = v.string(kind, "options.queue", self.queue)
            if q.strip() == "" or q.strip() != q:
                raise FieldError(kind, "options.queue", 'must be a queue name such as "critical", got "%s"' % q)
            out["queue"] = q
        if self.task_id is not None:
            t = v.string(kind, "options.task_id", self.task_id)
            if t.strip() != t:
                raise FieldError(kind, "options.task_id", 'must not start or end with spaces, got "%s"' % t)
            if t:
                out["task_id"] = t
        if self.process_in is not None and self.process_at is not None:
            raise FieldError(kind, "options.process_in", "and options.process_at cannot both be set; give one")
        if self.process_in is not None:
            secs = v.seconds(kind, "options.process_in", self.process_in)
            if secs < 0:
                raise FieldError(kind, "options.process_in", "must not be negative, got %s" % v.go_duration(secs))
            out["process_in"] = v.go_duration(secs)
        if self.process_at is not None:
            at = self.process_at
            if not isinstance(at, datetime.datetime):
                raise FieldError(kind, "options.process_at", "must be a datetime, got %s" % type(at).__name__)
            if at.tzinfo is None or at.utcoffset() is None:
                raise FieldError(kind, "options.process_at", "must be timezone-aware (for example datetime.now(timezone.utc))")
            out["process_at"] = at.isoformat()
        if self.max_retry is not None:
            n = v.integer(kind, "options.max_retry", self.max_retry)
            if n < 0:
                raise FieldError(kind, "options.max_retry", "must be 0 or more, got %d" % n)
            out["max_retry"] = n
        if self.timeout is not None:
            secs = v.seconds(kind, "options.timeout", self.timeout)
            if secs <= 0:
                raise FieldError(kind, "options.timeout", "must be positive, got %s" % v.go_duration(secs))
            out["timeout"] = v.go_duration(secs)
        if self.retention is not None:
            secs = v.seconds(kind, "options.retention", self.retention)
            if secs < 0:
                raise FieldError(kind, "options.retention", "must not be negative, got %s" % v.go_duration(secs))
            out["retention"] = v.go_duration(secs)
        return out


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def check_trace(kind: str, traceparent: str, tracestate: str) -> None:
    """Refuse what the worker would dead-letter: a traceparent that is not
    W3C's, or a tracestate without one."""
    if not traceparent:
        if tracestate:
            raise FieldError(kind, "tracestate", "without traceparent: send both, or neither")
        return
    ok = _TRACEPARENT.match(traceparent) is not None
    if ok:
        version, trace_id, span_id, _ = traceparent.split("-")
        ok = version != "ff" and trace_id != "0" * 32 and span_id != "0" * 16
    if not ok:
        raise FieldError(kind, "traceparent", '"%s" is not a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)' % traceparent)


def current_trace() -> Tuple[str, str]:
    """The current OpenTelemetry span's traceparent and tracestate, or empty
    strings (no span, or opentelemetry not installed)."""
    try:
        from opentelemetry import propagate  # type: ignore[import-not-found]
    except ImportError:
        return "", ""
    carrier: Dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def build(
    kind: Kind,
    args: Dict[str, Any],
    options: Optional[Options],
    rule: Rule,
    queues: Optional[Sequence[str]] = None,
    caches: Optional[Sequence[str]] = None,
    trace: Tuple[str, str] = ("", ""),
) -> bytes:
    """Check one job and return its entry, ready to push. Raises
    :class:`InvalidPayload` (a :class:`FieldError` naming the field, or an
    :class:`UnknownName`) and sends nothing."""
    if not isinstance(args, dict):
        raise InvalidPayload("%s: args must be a dict (a JSON object), got %s" % (kind.name, type(args).__name__))
    wire_args = kind.validate(dict(args), rule)
    wire_opts = options.wire(kind.name) if options is not None else {}
    if queues is not None:
        q = wire_opts.get("queue", kind.queue)
        if q not in queues:
            raise UnknownName("queue", q, queues)
    if caches is not None and kind.builtin:
        cache = wire_args.get("cache")
        if cache and cache not in caches:
            raise UnknownName("cache", cache, caches)
    entry: Dict[str, Any] = {"kind": kind.name, "args": wire_args}
    if wire_opts:
        entry["options"] = wire_opts
    traceparent, tracestate = trace
    if options is not None and (options.traceparent or options.tracestate):
        traceparent, tracestate = options.traceparent or "", options.tracestate or ""
    check_trace(kind.name, traceparent, tracestate)
    if traceparent:
        entry["traceparent"] = traceparent
        if tracestate:
            entry["tracestate"] = tracestate
    try:
        return json.dumps(entry, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise InvalidPayload("%s: args cannot be sent as JSON: %s" % (kind.name, e)) from None
