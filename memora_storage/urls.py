"""Where each content path is served from right now, the same for every web and worker process.

One Redis hash per site holds the settings snapshot and, for every path that has a Content File
row, whether the CDN holds the path's current version: `c` (it does) or `l` (it does not: a new or
edited file not uploaded yet, a failed upload, a deleted file), followed by the version's SHA-256.
Resolving any number of paths is one HMGET, or none: each process keeps what it read until Redis
reports a write to the hash (`utils/hash_mirror.py`). A path leaves the CDN before its new bytes reach the
disk, and returns only once the upload of exactly those bytes has been confirmed and committed
(a compare-and-set on the version), so no client is handed a CDN URL for a version the CDN lacks.

When Redis has lost the hash, callers read the rows and the settings from the database and a job
rebuilds it, without overwriting anything written meanwhile.
"""

import functools
import json
from collections.abc import Iterable
from typing import NamedTuple

import frappe
import redis
from frappe.utils import get_url

from memora_storage.utils.hash_mirror import HashMirror
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.resolver import get_content_url as resolve_url

HASH = "memora_storage:delivery"
# Fields no content path can be: content path segments never start with ".".
SETTINGS_FIELD = ".settings"
FAILOVER_FIELD = ".failover"  # the health probe's verdict (failover.py): {"down": bool, "since": ...}
READY_FIELD = ".ready"  # set once the hash holds every row's state
REBUILD_LOCK = "memora_storage:rebuild-delivery"  # not a prefix match of HASH: its writes drop no mirror
ON_CDN = "c"
LOCAL = "l"

# Compare-and-set: (path, marked, uploaded) goes on the CDN at `uploaded` only while the path is
# still marked local at `marked`, the version its row recorded: a newer mark means a newer file.
_PROMOTE = """
local promoted = 0
for i = 1, #ARGV, 3 do
	if redis.call('HGET', KEYS[1], ARGV[i]) == 'l' .. ARGV[i + 1] then
		redis.call('HSET', KEYS[1], ARGV[i], 'c' .. ARGV[i + 2])
		promoted = promoted + 1
	end
end
return promoted
"""


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
	return (ON_CDN if on_cdn else LOCAL) + (sha256 or "")


def row_state(
	sync_status: str | None, sha256: str | None, synced_sha256: str | None, local_status: str | None
) -> str:
	"""The delivery of a Content File row: on the CDN only when it was synced at the current version."""
	on_cdn = (
		local_status == "Written" and sync_status == "Synced" and bool(sha256) and sha256 == synced_sha256
	)
	return state(on_cdn, sha256)


def mark(states: dict[str, str]) -> None:
	"""Record paths' delivery as given (from `state`); local marks take effect at once."""
	if states:
		redis.Redis.hset(_redis(), _key(), mapping=states)
		_wrote()


def mark_local(path: str, sha256: str | None = None) -> None:
	"""Serve `path` from this server from now on: call before its file changes."""
	mark({path: state(False, sha256)})


def promote(versions: dict[str, str], marked: dict[str, str] | None = None) -> int:
	"""Serve these paths (path → SHA-256 uploaded) from the CDN, each only if it is still marked local
	at the version uploaded, or at the one `marked` names (a row repaired to what its file holds)."""
	if not versions:
		return 0
	marked = marked or {}
	args = [value for path, sha in versions.items() for value in (path, marked.get(path, sha), sha)]
	promoted = int(redis.Redis.eval(_redis(), _PROMOTE, 1, _key(), *args))
	_wrote()
	return promoted


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


def stored_failover() -> dict | None:
	raw = redis.Redis.hget(_redis(), _key(), FAILOVER_FIELD)
	return _parse(raw) if raw else None


def fill_failover(values: dict) -> None:
	redis.Redis.hsetnx(_redis(), _key(), FAILOVER_FIELD, json.dumps(values))


def _wrote() -> None:
	"""This process reads its own writes at once; other processes follow on Redis's invalidation."""
	if mirror := _mirror():
		mirror.invalidate()


def stored_settings() -> dict | None:
	raw = redis.Redis.hget(_redis(), _key(), SETTINGS_FIELD)
	return _parse(raw) if raw else None


def fill_settings(values: dict) -> None:
	"""Store a database read of the settings unless a save has published newer ones meanwhile."""
	redis.Redis.hsetnx(_redis(), _key(), SETTINGS_FIELD, json.dumps(values))


@functools.lru_cache(maxsize=16)
def _parse(raw: bytes) -> dict:
	return json.loads(raw)


@functools.lru_cache(maxsize=64)
def _url_settings(raw: bytes, failover: bytes | None, site_url: str) -> UrlSettings:
	from memora_storage import settings

	return settings.url_settings(_parse(raw), site_url, cdn_down=bool(failover and _parse(failover)["down"]))


class Delivery(NamedTuple):
	"""A path's delivery as the hash holds it: on the CDN or not, and the version's SHA-256."""

	on_cdn: bool
	sha256: str | None


def _delivery(value: bytes | None) -> Delivery | None:
	return None if value is None else Delivery(value[:1] == b"c", value[1:].decode() or None)


def lookup(paths: list[str]) -> tuple[UrlSettings | None, list[Delivery | None]]:
	"""The settings snapshot and each path's delivery (None for no row), in one round trip."""
	fields = [READY_FIELD, SETTINGS_FIELD, FAILOVER_FIELD, *paths]
	mirror = _mirror()
	values = mirror.get(fields) if mirror else redis.Redis.hmget(_redis(), _key(), fields)
	if values[0] is None or values[1] is None:
		return None, []
	return url_settings_of(values[1], values[2]), [_delivery(value) for value in values[3:]]


def url_settings_of(raw: bytes, failover: bytes | None = None) -> UrlSettings:
	values = _parse(raw)
	return _url_settings(raw, failover, "" if values["local_domain"] else get_url())


def link_url(path: str, url_settings: UrlSettings, state: Delivery | None) -> str:
	"""The URL a file's link to `path` carries: a child with no row has not been written yet, so it
	is linked locally whatever the settings (the API, by contrast, follows the settings for it)."""
	return resolve(path, url_settings, state or _NOT_WRITTEN)


_NOT_WRITTEN = Delivery(on_cdn=False, sha256=None)


def resolve(path: str, url_settings: UrlSettings, state: Delivery | None) -> str:
	"""The URL of `path` under one snapshot, given its delivery (None: no row, follow the settings)."""
	if state is None:
		return resolve_url(path, url_settings)
	return resolve_url(path, url_settings, state.on_cdn, state.sha256)


def get_content_url(path: str) -> str:
	"""The URL of one content path (FR-006): the CDN only while it holds the path's current version."""
	return get_content_urls([path])[path]


def get_content_urls(paths: list[str]) -> dict[str, str]:
	"""URLs of many paths from one settings snapshot and one Redis round trip (DB reads if Redis lost it)."""
	for path in paths:
		if not isinstance(path, str):
			raise InvalidPathError(f"path must be text, got {type(path).__name__}")
	url_settings, states = lookup(paths)
	if url_settings is None:
		return _from_database(paths)
	return {path: resolve(path, url_settings, state) for path, state in zip(paths, states, strict=True)}


def states_of(paths: list[str]) -> list[Delivery | None]:
	"""Each path's delivery, for a render that already holds its settings snapshot."""
	if not paths:
		return []
	url_settings, states = lookup(paths)
	if url_settings is None:
		return _states_from_database(paths)
	return states


def _from_database(paths: list[str]) -> dict[str, str]:
	from memora_storage import failover, settings

	values = settings.snapshot_values(frappe.db.get_singles_dict("CDN Settings"))
	url_settings = settings.url_settings(values, cdn_down=failover.stored_values()["down"])
	states = _states_from_database(paths)
	return {path: resolve(path, url_settings, state) for path, state in zip(paths, states, strict=True)}


def _states_from_database(paths: list[str]) -> list[Delivery | None]:
	from memora_storage.content_files import DOCTYPE, row_name

	request_rebuild()
	names = {row_name(path): path for path in paths}
	rows = frappe.get_all(
		DOCTYPE,
		filters={"name": ["in", list(names)]},
		fields=["path", "sync_status", "sha256", "synced_sha256", "local_status"],
	)
	found = {
		row.path: row_state(row.sync_status, row.sha256, row.synced_sha256, row.local_status) for row in rows
	}
	return [_delivery(found[path].encode()) if path in found else None for path in paths]


def request_rebuild() -> None:
	"""Queue one rebuild of a lost hash; a fresh job reads committed rows, not this caller's snapshot."""
	if redis.Redis.set(_redis(), frappe.cache.make_key(REBUILD_LOCK), 1, nx=True, ex=120):
		frappe.enqueue("memora_storage.delivery.rebuild", queue="short", at_front=True)


def rebuild() -> int:
	"""Fill the hash from every Content File row; a field written meanwhile (a newer mark) is kept."""
	from memora_storage import failover, settings

	try:
		rows = frappe.db.sql(
			"select path, sync_status, sha256, synced_sha256, local_status from `tabContent File`"
		)
		pipe = redis.Redis.pipeline(_redis(), transaction=False)
		for path, sync_status, sha256, synced_sha256, local_status in rows:
			pipe.hsetnx(_key(), path, row_state(sync_status, sha256, synced_sha256, local_status))
		pipe.hsetnx(
			_key(),
			SETTINGS_FIELD,
			json.dumps(settings.snapshot_values(frappe.db.get_singles_dict("CDN Settings"))),
		)
		pipe.hsetnx(_key(), FAILOVER_FIELD, json.dumps(failover.stored_values()))
		pipe.hset(_key(), READY_FIELD, 1)
		pipe.execute()
	finally:
		redis.Redis.delete(_redis(), frappe.cache.make_key(REBUILD_LOCK))
	return len(rows)


def ensure_ready() -> None:
	"""Build the hash now if it is missing (install, migrate)."""
	if not redis.Redis.hexists(_redis(), _key(), READY_FIELD):
		rebuild()
