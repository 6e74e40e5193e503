"""Key names and the internal-key rule, as cachekeeper's Go side has them
(package internal/keys): the same prefixes, the same refusals."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

DEFAULT_PREFIX = "cachekeeper:"
ASYNQ_PREFIX = "asynq:"


def check_prefix(prefix: str) -> str:
    """Return the key prefix ("" means the default) or raise ValueError."""
    if prefix == "":
        return DEFAULT_PREFIX
    if any(c in prefix for c in "{}*?[] \t\n"):
        raise ValueError('key prefix "%s" must not contain braces, glob characters or spaces' % prefix)
    return prefix


def inbox(prefix: str) -> str:
    """The default inbox list under prefix."""
    return prefix + "inbox"


def events_channel(prefix: str) -> str:
    """The default pub/sub channel of cache events under prefix."""
    return prefix + "events"


def fence(prefix: str, key: str) -> str:
    """The fence of a cache key, in its cluster slot (keys.Fence)."""
    return prefix + "fence:" + same_slot(key)


def cache_fence(prefix: str, cache: str, slot_tag: str = "") -> str:
    """The fence of a whole cache; on a cluster, its copy in the slot whose
    tag is slot_tag (keys.CacheFence)."""
    if not slot_tag:
        return prefix + "cachefence:" + cache
    return prefix + "cachefence:" + cache + ":{" + slot_tag + "}"


def lease(prefix: str, key: str) -> str:
    """The lease of a cache key (docs/read-protocol.md)."""
    return prefix + "lease:" + same_slot(key)


def lease_wake(prefix: str, key: str) -> str:
    """The wake list of a cache key's lease."""
    return lease(prefix, key) + ":wake"


def hot(prefix: str, cache: str) -> str:
    """The sorted set of a cache's recently read ids (refresh-ahead)."""
    return prefix + "hot:" + cache


def dead_letter(inbox_key: str) -> str:
    """The inbox's dead-letter list (keys.DeadLetter)."""
    return same_slot(inbox_key) + ":dead"


_slot_tags: Dict[int, str] = {}


def slot_tag(slot: int) -> str:
    """The smallest base-36 numeral whose key hashes to slot (keys.SlotTag)."""
    if slot not in _slot_tags:
        from redis.crc import key_slot

        n = 0
        while True:
            tag = _base36(n)
            if key_slot(tag.encode()) == slot:
                _slot_tags[slot] = tag
                break
            n += 1
    return _slot_tags[slot]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def hash_tag(key: str) -> Optional[str]:
    """The Redis Cluster hash tag of key, or None."""
    i = key.find("{")
    if i < 0:
        return None
    j = key.find("}", i + 1)
    if j <= i + 1:
        return None
    return key[i + 1 : j]


def same_slot(key: str) -> str:
    """A string that hashes to key's cluster slot (keys.SameSlot)."""
    if hash_tag(key) is not None or "{" in key or "}" in key:
        return key
    return "{" + key + "}"


def check_cache_name(name: str) -> Optional[str]:
    """Why name is not a cache name, or None (keys.CheckCacheName)."""
    if name.strip() == "":
        return 'must name a cache (for example "user")'
    if any(c in name for c in " {}*?[]\t\n"):
        return '"%s" is not a cache name: names are plain words such as "user" (no spaces, braces or glob characters)' % name
    return None


def glob_prefix(pattern: str) -> Tuple[str, bool]:
    """The literal text a glob starts with, and whether it is the whole pattern."""
    out: List[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?[":
            return "".join(out), False
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
                out.append(pattern[i])
        else:
            out.append(c)
        i += 1
    return "".join(out), True


def matches_everything(pattern: str) -> bool:
    """A glob with no literal prefix ("*", "?x", "[a-z]*")."""
    return pattern == "" or pattern[0] in "*?["


class Rule:
    """Which keys belong to cachekeeper or to the asynq queue (keys.Rule).

    No job may delete, expire or rewrite one; a job naming one is refused.
    """

    def __init__(self, prefix: str = "", owned: Iterable[str] = ()) -> None:
        self._prefixes: List[str] = []
        self._exact: List[str] = []
        for p in (DEFAULT_PREFIX, prefix, ASYNQ_PREFIX):
            if p:
                self._add(p)
                self._add("{" + p)
        for k in owned:
            if not k or self.internal(k):
                continue
            self._exact.append(k)
            self._add(same_slot(k) + ":")

    def _add(self, p: str) -> None:
        if p not in self._prefixes:
            self._prefixes.append(p)

    def internal(self, key: str) -> bool:
        return any(key.startswith(p) for p in self._prefixes) or key in self._exact

    @staticmethod
    def _owner(key: str) -> str:
        if key.startswith(ASYNQ_PREFIX) or key.startswith("{" + ASYNQ_PREFIX):
            return "the asynq queue"
        return "cachekeeper itself"

    def check_key(self, key: str) -> Optional[str]:
        if not self.internal(key):
            return None
        return 'internal key: "%s" belongs to %s; jobs never delete, expire or rewrite it' % (key, self._owner(key))

    def check_pattern(self, pattern: str) -> Optional[str]:
        lit, whole = glob_prefix(pattern)
        if whole:
            return self.check_key(lit)
        if self.internal(lit):
            return 'internal key: pattern "%s" only matches keys of %s (they start with "%s"); jobs never delete, expire or rewrite them' % (
                pattern,
                self._owner(lit),
                lit,
            )
        return None


class Template:
    """A key template with one placeholder, such as "session:{token}"."""

    def __init__(self, what: str, raw: str) -> None:
        self.raw = raw
        parts: List[Tuple[str, bool]] = []  # (text, is_placeholder)
        lit: List[str] = []
        names = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == "{" and raw[i + 1 : i + 2] == "{":
                lit.append("{")
                i += 2
                continue
            if c == "}" and raw[i + 1 : i + 2] == "}":
                lit.append("}")
                i += 2
                continue
            if c == "{":
                end = raw.find("}", i + 1)
                if end < 0:
                    raise ValueError('%s: key template "%s": "{" at byte %d is never closed' % (what, raw, i))
                name = raw[i + 1 : end]
                if not name or not all(ch == "_" or ch.isascii() and ch.isalnum() for ch in name):
                    raise ValueError('%s: key template "%s": placeholder {%s} must be a name (letters, digits, _)' % (what, raw, name))
                if lit:
                    parts.append(("".join(lit), False))
                    lit = []
                parts.append((name, True))
                names.append(name)
                i = end + 1
                continue
            if c == "}":
                raise ValueError('%s: key template "%s": "}" at byte %d has no "{" (write }} for a literal brace)' % (what, raw, i))
            if c in "*?[":
                raise ValueError('%s: key template "%s": glob character "%s" is not allowed in a key' % (what, raw, c))
            lit.append(c)
            i += 1
        if lit:
            parts.append(("".join(lit), False))
        if not names:
            raise ValueError('%s: key template "%s" has no placeholder such as {id}' % (what, raw))
        if len(set(names)) > 1:
            raise ValueError('%s: key template "%s" must have one placeholder, has {%s} and {%s}' % (what, raw, names[0], names[1]))
        self._parts = parts

    def render(self, value: str) -> str:
        return "".join(value if ph else text for text, ph in self._parts)
