"""The delivery hash: one Redis hash per site that every web and worker process reads to decide URLs.

It holds the settings snapshot, the probe's verdict and, for every path that has a Content File row,
whether the CDN holds the path's current version: `c` (it does) or `l` (it does not: a new or edited
file not uploaded yet, a failed upload, a deleted file), followed by the version's SHA-256. Reading
any number of paths is one HMGET, or none: each process keeps what it read until Redis reports a
write to the hash (`utils/hash_mirror.py`). A path is marked local before its new bytes reach the
disk, and goes back on the CDN only once the upload of exactly those bytes has been confirmed and
committed (a compare-and-set on the version). Even then an edge or a browser may still keep the
version it replaced: such a path is held, `c<sha>@<until>`, and served locally until that epoch
second (`edge.py` decides how long; `HELD` lists the holds so their parents can follow when they end).

The rows are the record (`content_files.py` writes both and rebuilds this from them when Redis has
lost it); this module only stores and reads.
"""

import functools
import json
import time
from collections.abc import Iterable
from typing import NamedTuple

import frappe
import redis

from memora_storage.utils.hash_mirror import HashMirror

HASH = "memora_storage:delivery"
# Fields no content path can be: content path segments never start with ".".
SETTINGS_FIELD = ".settings"
FAILOVER_FIELD = ".failover"  # the probe's verdict (failover.py): {"down": bool, "since": ...}
READY_FIELD = ".ready"  # set once the hash holds every row's state
ON_CDN = "c"
LOCAL = "l"
HOLD = "@"  # `c<sha>@<until>`: on the CDN, but served locally until the epoch second `until`
HELD = "memora_storage:held"  # sorted set: held path → until

# Compare-and-set: (path, marked, uploaded, until) goes on the CDN at `uploaded` only while the path
# is still marked local at `marked`, the version its row recorded: a newer mark means a newer file.
# A non-empty `until` holds it (and lists it in KEYS[2]).
_PROMOTE = """
local promoted = 0
for i = 1, #ARGV, 4 do
	if redis.call('HGET', KEYS[1], ARGV[i]) == 'l' .. ARGV[i + 1] then
		local value = 'c' .. ARGV[i + 2]
		if ARGV[i + 3] ~= '' then
			value = value .. '@' .. ARGV[i + 3]
			redis.call('ZADD', KEYS[2], ARGV[i + 3], ARGV[i])
		end
		redis.call('HSET', KEYS[1], ARGV[i], value)
		promoted = promoted + 1
	end
end
return promoted
"""

# A mark on the CDN at the version a path is held at keeps the hold: the edge may still keep the
# version before it, whoever finds the path's bytes unchanged.
_MARK = """
for i = 1, #ARGV, 2 do
	local current = redis.call('HGET', KEYS[1], ARGV[i])
	if not (current and string.sub(ARGV[i + 1], 1, 1) == 'c'
		and string.sub(current, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. '@') then
		redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
	end
end
"""

# A hold that has ended: the value loses its `@until` (a deleted path's field goes), unless the
# path was written again meanwhile.
_RELEASE = """
for i = 1, #ARGV, 2 do
	local current = redis.call('HGET', KEYS[1], ARGV[i])
	if current and string.sub(current, -#ARGV[i + 1] - 1) == '@' .. ARGV[i + 1] then
		local value = string.sub(current, 1, #current - #ARGV[i + 1] - 1)
		if value == 'c' then
			redis.call('HDEL', KEYS[1], ARGV[i])
		else
			redis.call('HSET', KEYS[1], ARGV[i], value)
		end
	end
	redis.call('ZREM', KEYS[2], ARGV[i])
end
"""


class Delivery(NamedTuple):
	"""A path's delivery as the hash holds it now: on the CDN or not (a held path is not, until its
	hold ends), and the version's SHA-256."""

	on_cdn: bool
	sha256: str | None


class Snapshot(NamedTuple):
	"""One read of the hash: the raw settings and verdict fields, and each path's delivery."""

	settings: bytes | None
	failover: bytes | None
	deliveries: list[Delivery | None]


def _key() -> bytes:
	return frappe.cache.make_key(HASH)


def _redis() -> redis.Redis:
	"""The raw client: Frappe's wrapper pickles hash values, this hash holds plain strings."""
	return frappe.cache


_mirrors: dict[bytes, HashMirror] = {}


def _mirror() -> HashMirror | None:
	"""This process's copy of the site's hash (not behind Redis Sentinel, whose failovers it does not follow)."""
	if frappe.conf.get("redis_cache_sentinel_enabled"):
		return None
	key = _key()
	if key not in _mirrors:
		_mirrors[key] = HashMirror(frappe.cache, key)
	return _mirrors[key]


def state(on_cdn: bool, sha256: str | None) -> str:
	"""The stored form of a path's delivery."""
	return (ON_CDN if on_cdn else LOCAL) + (sha256 or "")


def delivery_of(value: bytes | None, now: float | None = None) -> Delivery | None:
	"""The delivery a stored value says now: a held path is local until its hold ends."""
	if value is None:
		return None
	sha, _sep, until = value[1:].decode().partition(HOLD)
	held = bool(until) and int(until) > (time.time() if now is None else now)
	return Delivery(value[:1] == b"c" and not held, sha or None)


def read(paths: list[str]) -> Snapshot | None:
	"""The settings, the verdict and each path's delivery (None: no row) in one round trip; None
	while the hash is not complete (Redis lost it and no rebuild has finished)."""
	fields = [READY_FIELD, SETTINGS_FIELD, FAILOVER_FIELD, *paths]
	mirror = _mirror()
	values = mirror.get(fields) if mirror else redis.Redis.hmget(_redis(), _key(), fields)
	if values[0] is None or values[1] is None:
		return None
	return Snapshot(values[1], values[2], [delivery_of(value) for value in values[3:]])


def mark(states: dict[str, str]) -> None:
	"""Record paths' delivery as given (from `state`); local marks take effect at once."""
	if states:
		args = [value for pair in states.items() for value in pair]
		redis.Redis.eval(_redis(), _MARK, 1, _key(), *args)
		_wrote()


def mark_local(path: str, sha256: str | None = None) -> None:
	"""Serve `path` from this server from now on: call before its file changes."""
	mark({path: state(False, sha256)})


def promote(
	versions: dict[str, str], marked: dict[str, str] | None = None, held: dict[str, int] | None = None
) -> int:
	"""Serve these paths (path → SHA-256 uploaded) from the CDN, each only if it is still marked local
	at the version uploaded, or at the one `marked` names (a row repaired to what its file holds);
	those in `held` only from that epoch second on."""
	if not versions:
		return 0
	marked, held = marked or {}, held or {}
	args = [
		value
		for path, sha in versions.items()
		for value in (path, marked.get(path, sha), sha, str(held[path]) if path in held else "")
	]
	promoted = int(redis.Redis.eval(_redis(), _PROMOTE, 2, _key(), _held_key(), *args))
	_wrote()
	return promoted


def hold_deleted(held: dict[str, int]) -> None:
	"""Deleted paths whose old bytes an edge may keep: local (a 404) until then, then no field."""
	if held:
		redis.Redis.hset(
			_redis(), _key(), mapping={path: f"{ON_CDN}{HOLD}{until}" for path, until in held.items()}
		)
		redis.Redis.zadd(_redis(), _held_key(), held)
		_wrote()


def ended_holds(now: float | None = None) -> dict[str, int]:
	"""Held paths whose hold has ended (path → until)."""
	now = time.time() if now is None else now
	ended = redis.Redis.zrangebyscore(_redis(), _held_key(), "-inf", now, withscores=True)
	return {path.decode(): int(until) for path, until in ended}


def release(ended: dict[str, int]) -> None:
	"""Drop ended holds from the values (the URL decision already ignores them)."""
	if ended:
		args = [value for path, until in ended.items() for value in (path, str(until))]
		redis.Redis.eval(_redis(), _RELEASE, 2, _key(), _held_key(), *args)
		_wrote()


def _held_key() -> bytes:
	return frappe.cache.make_key(HELD)


def forget(paths: Iterable[str]) -> None:
	"""Paths with no Content File row any more: they follow the settings again."""
	if paths := list(paths):
		redis.Redis.hdel(_redis(), _key(), *paths)
		_wrote()


def publish_settings(values: dict) -> None:
	redis.Redis.hset(_redis(), _key(), SETTINGS_FIELD, json.dumps(values))
	_wrote()


def publish_failover(values: dict) -> None:
	"""Every process follows the probe's verdict from its next call on; a field apart from the
	settings, so a settings save can never put back a verdict it read before the probe's."""
	redis.Redis.hset(_redis(), _key(), FAILOVER_FIELD, json.dumps(values))
	_wrote()


def stored_settings() -> dict | None:
	raw = redis.Redis.hget(_redis(), _key(), SETTINGS_FIELD)
	return parse(raw) if raw else None


def stored_failover() -> dict | None:
	raw = redis.Redis.hget(_redis(), _key(), FAILOVER_FIELD)
	return parse(raw) if raw else None


def fill_settings(values: dict) -> None:
	"""Store a database read of the settings unless a save has published newer ones meanwhile."""
	redis.Redis.hsetnx(_redis(), _key(), SETTINGS_FIELD, json.dumps(values))


def fill_failover(values: dict) -> None:
	redis.Redis.hsetnx(_redis(), _key(), FAILOVER_FIELD, json.dumps(values))


def fill(states: Iterable[tuple[str, str]], settings: dict, failover: dict) -> None:
	"""Complete the hash from a database read; a field written meanwhile (a newer mark) is kept."""
	pipe = redis.Redis.pipeline(_redis(), transaction=False)
	for path, value in states:
		pipe.hsetnx(_key(), path, value)
	pipe.hsetnx(_key(), SETTINGS_FIELD, json.dumps(settings))
	pipe.hsetnx(_key(), FAILOVER_FIELD, json.dumps(failover))
	pipe.hset(_key(), READY_FIELD, 1)
	pipe.execute()


def is_ready() -> bool:
	return bool(redis.Redis.hexists(_redis(), _key(), READY_FIELD))


def _wrote() -> None:
	"""This process reads its own writes at once; other processes follow on Redis's invalidation."""
	if mirror := _mirror():
		mirror.invalidate()


@functools.lru_cache(maxsize=16)
def parse(raw: bytes) -> dict:
	return json.loads(raw)
