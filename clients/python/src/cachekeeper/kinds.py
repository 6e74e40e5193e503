"""The job kinds: the built-in ones with the Go client's validation, and
kinds of the application's own.

Each built-in kind checks its arguments exactly as ``tasks`` does in Go
(``Validate()`` and the internal-key rule); a refusal is a
:class:`~cachekeeper.errors.FieldError` naming the field, and nothing is sent.
A test in the Go tree runs this module and the Go parser side by side, so the
two cannot drift.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from . import _validate as v
from ._keys import Rule, check_cache_name, matches_everything
from .errors import FieldError, InvalidPayload

QUEUE_CRITICAL = "critical"
QUEUE_DEFAULT = "default"
QUEUE_LOW = "low"

WARM = "cache:warm"
WARM_ALL = "cache:warm_all"
INVALIDATE = "cache:invalidate"
INVALIDATE_PATTERN = "cache:invalidate_pattern"
INVALIDATE_TAG = "cache:invalidate_tag"
SESSION_CLEANUP = "session:cleanup"
SESSION_REVOKE = "session:revoke"
RATELIMIT_PRUNE = "ratelimit:prune"
NOTIFY_PUBLISH = "notify:publish"

MAX_WARM_IDS = 1000
"""The most ids of a warm entry the worker coalesces with other warms of its
cache (``tasks.MaxWarmCacheIDs``); the producer splits longer lists."""

Validator = Callable[[Dict[str, Any], Rule], Dict[str, Any]]
"""Checks the arguments of one job and returns them as they go on the wire;
raises :class:`FieldError` (or :class:`InvalidPayload`)."""


class Kind:
    """A job kind: its name, default queue, retry budget, timeout (seconds)
    and the check of its arguments."""

    def __init__(self, name: str, queue: str, max_retry: int, timeout: float, validate: Validator, builtin: bool = False) -> None:
        self.name = name
        self.queue = queue
        self.max_retry = max_retry
        self.timeout = timeout
        self.validate = validate
        self.builtin = builtin

    def __repr__(self) -> str:
        return "Kind(%r, queue=%r)" % (self.name, self.queue)


def _cache(kind: str, args: Dict[str, Any], required: bool = True) -> str:
    name = v.string(kind, "cache", args.get("cache", ""))
    why = check_cache_name(name)
    if why is not None and (required or name != ""):
        raise FieldError(kind, "cache", why)
    return name


def _pattern(kind: str, field: str, pattern: str, rule: Rule) -> None:
    why = rule.check_pattern(pattern) if pattern else None
    if why is not None:
        raise FieldError(kind, field, why)


def _put(out: Dict[str, Any], name: str, value: Any) -> None:
    if value:  # Go's omitempty: zero values are not sent
        out[name] = value


def _warm(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    v.no_unknown(WARM, args, ["cache", "ids"])
    cache = _cache(WARM, args)
    return {"cache": cache, "ids": v.ids(WARM, args.get("ids"), required=True)}


def _warm_all(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    v.no_unknown(WARM_ALL, args, ["cache", "max_keys_per_second", "restart"])
    out: Dict[str, Any] = {"cache": _cache(WARM_ALL, args)}
    _put(out, "max_keys_per_second", v.rate(WARM_ALL, "max_keys_per_second", args.get("max_keys_per_second", 0)))
    _put(out, "restart", v.boolean(WARM_ALL, "restart", args.get("restart", False)))
    return out


def _invalidate(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = INVALIDATE
    v.no_unknown(k, args, ["cache", "ids", "keys", "rewarm"])
    cache = v.string(k, "cache", args.get("cache") or "")
    raw_ids = args.get("ids") or []
    raw_keys = args.get("keys") or []
    rewarm = v.boolean(k, "rewarm", args.get("rewarm", False))
    if isinstance(raw_keys, (str, bytes)) or not isinstance(raw_keys, (list, tuple)):
        raise FieldError(k, "keys", "must be a list of keys")
    if raw_keys and (cache or raw_ids):
        raise FieldError(k, "keys", "cannot be combined with cache and ids; give one or the other")
    if raw_keys:
        keys: List[str] = []
        for i, key in enumerate(raw_keys):
            s = v.string(k, "keys[%d]" % i, key)
            if s.strip() == "":
                raise FieldError(k, "keys[%d]" % i, "must not be blank")
            keys.append(s)
        if rewarm:
            raise FieldError(k, "rewarm", "needs cache and ids, not keys")
        for i, key in enumerate(keys):
            why = rule.check_key(key)
            if why is not None:
                raise FieldError(k, "keys[%d]" % i, why)
        return {"keys": keys}
    if cache == "" and not raw_ids:
        raise FieldError(k, "cache", "is required with ids (or give keys)")
    out: Dict[str, Any] = {"cache": _cache(k, args), "ids": v.ids(k, raw_ids, required=True)}
    _put(out, "rewarm", rewarm)
    return out


def _invalidate_pattern(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = INVALIDATE_PATTERN
    v.no_unknown(k, args, ["pattern", "allow_all", "max_keys_per_second"])
    pattern = v.string(k, "pattern", args.get("pattern", ""))
    allow_all = v.boolean(k, "allow_all", args.get("allow_all", False))
    if pattern == "":
        raise FieldError(k, "pattern", 'must not be empty (for example "user:*")')
    if matches_everything(pattern) and not allow_all:
        raise FieldError(k, "pattern", '"%s" matches every key; set allow_all (CLI: --yes) if you mean it' % pattern)
    out: Dict[str, Any] = {"pattern": pattern}
    _put(out, "allow_all", allow_all)
    _put(out, "max_keys_per_second", v.rate(k, "max_keys_per_second", args.get("max_keys_per_second", 0)))
    _pattern(k, "pattern", pattern, rule)
    return out


def _invalidate_tag(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = INVALIDATE_TAG
    v.no_unknown(k, args, ["tag"])
    tag = v.string(k, "tag", args.get("tag", ""))
    if tag.strip() == "":
        raise FieldError(k, "tag", 'must not be empty (for example "org:7")')
    return {"tag": tag}


def _duration_field(kind: str, out: Dict[str, Any], args: Dict[str, Any], name: str, msg: str) -> None:
    raw = args.get(name)
    if raw is None:
        return
    secs = v.seconds(kind, name, raw)
    if secs < 0:
        raise FieldError(kind, name, msg)
    if secs > 0:
        out[name] = v.go_duration(secs)


def _session_cleanup(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = SESSION_CLEANUP
    v.no_unknown(k, args, ["pattern", "max_age", "idle_timeout", "max_keys_per_second", "dry_run"])
    out: Dict[str, Any] = {}
    pattern = v.string(k, "pattern", args.get("pattern", ""))
    _put(out, "pattern", pattern)
    _duration_field(k, out, args, "max_age", "must not be negative")
    _duration_field(k, out, args, "idle_timeout", "must not be negative")
    mk = args.get("max_keys_per_second", 0)
    if v.integer(k, "max_keys_per_second", mk) < 0:
        raise FieldError(k, "max_keys_per_second", "must be 0 (no cap) or positive")
    _put(out, "max_keys_per_second", mk)
    _put(out, "dry_run", v.boolean(k, "dry_run", args.get("dry_run", False)))
    if pattern and matches_everything(pattern):
        raise FieldError(k, "pattern", '"%s" matches every key; give a prefix such as "session:*"' % pattern)
    _pattern(k, "pattern", pattern, rule)
    return out


def _session_revoke(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = SESSION_REVOKE
    v.no_unknown(k, args, ["user_id", "scan"])
    user = args.get("user_id", "")
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    user = v.string(k, "user_id", user)
    if user.strip() == "":
        raise FieldError(k, "user_id", "must not be empty")
    out: Dict[str, Any] = {"user_id": user}
    _put(out, "scan", v.boolean(k, "scan", args.get("scan", False)))
    return out


def _ratelimit_prune(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = RATELIMIT_PRUNE
    v.no_unknown(k, args, ["pattern", "window", "max_keys_per_second"])
    out: Dict[str, Any] = {}
    pattern = v.string(k, "pattern", args.get("pattern", ""))
    _put(out, "pattern", pattern)
    _duration_field(k, out, args, "window", 'must be positive (for example "60s")')
    mk = args.get("max_keys_per_second", 0)
    if v.integer(k, "max_keys_per_second", mk) < 0:
        raise FieldError(k, "max_keys_per_second", "must be 0 (no cap) or positive")
    _put(out, "max_keys_per_second", mk)
    if pattern and matches_everything(pattern):
        raise FieldError(k, "pattern", '"%s" matches every key; give a prefix such as "rate_limit:*"' % pattern)
    _pattern(k, "pattern", pattern, rule)
    return out


def _notify(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    k = NOTIFY_PUBLISH
    v.no_unknown(k, args, ["channel", "message"])
    channel = v.string(k, "channel", args.get("channel", ""))
    message = v.string(k, "message", args.get("message", ""))
    if channel.strip() == "":
        raise FieldError(k, "channel", "must not be empty")
    return {"channel": channel, "message": message}


BUILTIN: Dict[str, Kind] = {
    k.name: k
    for k in [
        Kind(WARM, QUEUE_DEFAULT, 5, 120, _warm, True),
        Kind(WARM_ALL, QUEUE_LOW, 3, 6 * 3600, _warm_all, True),
        Kind(INVALIDATE, QUEUE_CRITICAL, 10, 30, _invalidate, True),
        Kind(INVALIDATE_PATTERN, QUEUE_CRITICAL, 5, 3600, _invalidate_pattern, True),
        Kind(INVALIDATE_TAG, QUEUE_CRITICAL, 10, 300, _invalidate_tag, True),
        Kind(SESSION_CLEANUP, QUEUE_LOW, 3, 1800, _session_cleanup, True),
        Kind(SESSION_REVOKE, QUEUE_CRITICAL, 10, 60, _session_revoke, True),
        Kind(RATELIMIT_PRUNE, QUEUE_LOW, 3, 1800, _ratelimit_prune, True),
        Kind(NOTIFY_PUBLISH, QUEUE_DEFAULT, 5, 30, _notify, True),
    ]
}
"""The kinds every worker handles, by name (Go: ``tasks.Kinds()``)."""


def _any_object(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
    return args


def own_kind(name: str, queue: str = QUEUE_DEFAULT, validate: Optional[Callable[[Dict[str, Any]], None]] = None) -> Kind:
    """Declare a kind of the application's own (handled by a worker that
    registered it), for :meth:`Producer.register`.

    ``validate``, when given, is called with the arguments and raises
    :class:`FieldError` (or ``ValueError``) to refuse them; a plain
    ``ValueError`` is turned into an :class:`InvalidPayload` naming the kind.
    """
    if not isinstance(name, str) or name.strip() != name or name == "" or any(c.isspace() for c in name):
        raise InvalidPayload('kind name "%s" must be a non-empty word such as "app:send_mail"' % name)
    if name in BUILTIN:
        raise InvalidPayload('kind "%s" is built in; declare your own under another name such as "app:%s"' % (name, name.split(":")[-1]))
    if not queue or queue.strip() != queue:
        raise InvalidPayload('kind "%s": queue "%s" must be a plain name such as "default"' % (name, queue))

    def check(args: Dict[str, Any], rule: Rule) -> Dict[str, Any]:
        if validate is not None:
            try:
                validate(args)
            except FieldError:
                raise
            except ValueError as e:
                raise InvalidPayload("%s: %s" % (name, e)) from None
        return args

    return Kind(name, queue, -1, 0, check, False)
