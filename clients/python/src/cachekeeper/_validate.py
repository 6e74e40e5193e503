"""Field checks shared by the kinds: types, ids, durations (Go syntax)."""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, List, Optional, Union

from .errors import FieldError

Duration = Union[int, float, str, datetime.timedelta]
"""A duration: seconds (int or float), a ``datetime.timedelta``, or a Go
duration string such as ``"90s"``, ``"15m"``, ``"1h30m"``."""

_GO_DURATION = re.compile(r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def json_type(v: Any) -> str:
    """The JSON type name of a Python value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def string(kind: str, field: str, v: Any) -> str:
    if not isinstance(v, str):
        raise FieldError(kind, field, "must be a string, got %s" % json_type(v))
    return v


def boolean(kind: str, field: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise FieldError(kind, field, "must be a bool, got %s" % json_type(v))
    return v


def integer(kind: str, field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(kind, field, "must be an integer, got %s" % json_type(v))
    return v


def rate(kind: str, field: str, v: Any) -> int:
    n = integer(kind, field, v)
    if n < 0:
        raise FieldError(kind, field, "must be 0 (no cap) or positive, got %d" % n)
    return n


def one_id(kind: str, field: str, v: Any) -> str:
    """An id as the worker takes it: a string, or an integer sent as its decimal text."""
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise FieldError(kind, field, "must be a string or an integer, got %s" % json_type(v))
    s = v if isinstance(v, str) else str(v)
    if s.strip() == "":
        raise FieldError(kind, field, "must not be blank")
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        raise FieldError(kind, field, "must be a string or an integer, got %d" % v)
    return s


def ids(kind: str, v: Any, required: bool = True, field: str = "ids") -> List[str]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise FieldError(kind, field, "must be a list of ids")
    out = [one_id(kind, "%s[%d]" % (field, i), x) for i, x in enumerate(v)]
    if required and not out:
        raise FieldError(kind, field, "must not be empty")
    return out


def seconds(kind: str, field: str, v: Any) -> float:
    """A duration in seconds; raises FieldError naming field."""
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, bool):
        raise FieldError(kind, field, 'must be a duration string such as "15m" or a number of seconds')
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        if v in ("0", "+0", "-0"):
            return 0.0
        if not _GO_DURATION.match(v):
            raise FieldError(kind, field, 'is not a duration: "%s" (use 90s, 15m, 24h)' % v)
        sign = -1.0 if v.startswith("-") else 1.0
        return sign * sum(float(n) * _UNITS[u] for n, u in _PART.findall(v))
    raise FieldError(kind, field, 'must be a duration string such as "15m" or a number of seconds')


def go_duration(secs: float) -> str:
    """secs as a Go duration string the worker parses exactly ("90s", "1500ms", "250us")."""
    if secs == int(secs):
        return "%ds" % int(secs)
    ms = secs * 1e3
    if abs(ms - round(ms)) < 1e-6:
        return "%dms" % round(ms)
    return "%dus" % round(secs * 1e6)


def no_unknown(kind: str, args: Dict[str, Any], known: List[str]) -> None:
    for name in args:
        if name not in known:
            raise FieldError(kind, name, "is not a field of this kind (fields: %s)" % ", ".join(known))


def opt(args: Dict[str, Any], name: str) -> Optional[Any]:
    """The value of an optional field; None and a missing field are alike."""
    return args.get(name)
