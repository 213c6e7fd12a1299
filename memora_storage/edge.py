"""The CDN's edge: how long it and browsers may keep a version the bucket no longer holds, the purge
that makes them forget it, and the hold that keeps a path's URL local until they have.

Unversioned URLs name a path, not a version: once an upload replaced the bucket's copy, an edge (or a
browser) may serve the copy it fetched before for that copy's Cache-Control lifetime. So a path whose
bucket copy changed goes back on the CDN only once no cache can still hold the old one: at once after
a confirmed purge when the old lifetime for browsers (`max-age`) is 0, else after that lifetime
(`s-maxage` too when no purge was confirmed), counted from the confirmed upload, which is the last
moment an edge could fetch the old copy. Files listing a held path wait for it (`held_parents`) and
are rendered again when its hold ends (`release`). Versioned URLs (`?v=`) change with the version, so
nothing is held for them; their old form is purged when a purge is configured.

What the bucket holds of each path (version and lifetimes) is kept in Redis beside the delivery hash.
"""

import math
import time
from collections.abc import Iterable

import frappe
import redis
from frappe import _

from memora_storage import bucket, delivery_hash, settings
from memora_storage.utils import canonical, edge_probe
from memora_storage.utils.paths import url_path
from memora_storage.utils.purge import Lifetimes, PurgeConfig, PurgeResult, lifetimes, purge
from memora_storage.utils.resolver import VERSION_DIGITS

RECORD = "memora_storage:edge"  # path → "<sha256 or -> <edge s> <browser s>" of the bucket's copy
HELD_PARENTS = "memora_storage:held-parents"  # sorted set: file listing a held path → latest until
STATS = "memora_storage:edge-stats"  # counters: purged URLs, failed purges, holds
DELETED = "-"
PURGE_CHECK_PATH = ".memora-purge-check.json"  # a dot name: never content, never verified
PURGE_CHECK_CACHE_CONTROL = "public, max-age=600"  # kept by the edge, so only a purge can refresh it


def _redis() -> redis.Redis:
	return frappe.cache


def _key(name: str) -> bytes:
	return frappe.cache.make_key(name)


def purge_config() -> PurgeConfig | None:
	"""CDN Settings' purge, with the bucket's keys for CloudFront; None when no purge is set."""
	doc = frappe.get_single(settings.DOCTYPE)
	provider = doc.get("cdn_purge") or ""
	if provider in ("", "None"):
		return None
	s3 = bucket.s3_config(require_enabled=False)
	return PurgeConfig(
		provider=provider,
		zone=(doc.get("purge_zone_id") or "").strip(),
		token=doc.get_password("purge_api_token", raise_exception=False) or "",
		endpoint=(doc.get("purge_endpoint") or "").strip(),
		access_key=s3.access_key if s3 else "",
		secret_key=s3.secret_key if s3 else "",
		region=s3.region if s3 else "us-east-1",
	)


def cdn_urls(path: str, values: dict, versions: Iterable[str | None] = ()) -> list[str]:
	"""The URLs an edge may keep `path` under: its plain CDN URL, and with versions on each `?v=` form."""
	url = f"{values['cdn_base_url'].rstrip('/')}/{url_path(path)}"
	forms = [url]
	if values.get("version_in_urls"):
		forms += [f"{url}?v={sha[:VERSION_DIGITS]}" for sha in versions if sha and sha != DELETED]
	return forms


def _records(paths: list[str]) -> dict[str, tuple[str, Lifetimes]]:
	if not paths:
		return {}
	values = redis.Redis.hmget(_redis(), _key(RECORD), paths)
	records = {}
	for path, value in zip(paths, values, strict=True):
		if value:
			sha, edge, browser = value.decode().split(" ")
			records[path] = (sha, Lifetimes(int(edge), int(browser)))
	return records


def _remember(copies: dict[str, tuple[str, Lifetimes]]) -> None:
	if copies:
		mapping = {path: f"{sha} {life.edge} {life.browser}" for path, (sha, life) in copies.items()}
		redis.Redis.hset(_redis(), _key(RECORD), mapping=mapping)


def _count(**counts: int) -> None:
	pipe = redis.Redis.pipeline(_redis(), transaction=False)
	for name, value in counts.items():
		if value:
			pipe.hincrby(_key(STATS), name, value)
	pipe.execute()


def stats() -> dict[str, int]:
	return {k.decode(): int(v) for k, v in redis.Redis.hgetall(_redis(), _key(STATS)).items()}


def _replaced(
	paths: dict[str, str], previous: dict[str, str | None], cache_controls: dict[str, str]
) -> dict[str, tuple[str, Lifetimes]]:
	"""Paths whose bucket copy was another version before: that version and its lifetimes (as it was
	uploaded; the rows' record and the current Cache-Control when Redis lost that)."""
	records = _records(list(paths))
	replaced = {}
	for path, sha in paths.items():
		old, life = records.get(path) or (previous.get(path), None)
		if old and old != sha:
			replaced[path] = (old, life or lifetimes(cache_controls.get(path, "")))
	return replaced


def _forget_at_edge(replaced: dict[str, tuple[str, Lifetimes]], values: dict) -> PurgeResult | None:
	"""Purge the old copies' URLs; None when no purge is configured."""
	config = purge_config()
	if not (config and replaced and values.get("cdn_base_url")):
		return None
	urls = [url for path, (old, _life) in replaced.items() for url in cdn_urls(path, values, [old])]
	result = purge(config, urls)
	_count(purged=len(urls) if result.ok else 0, purge_failed=0 if result.ok else 1)
	if not result.ok:
		frappe.log_error(
			title=_("Memora Storage: CDN purge failed, URLs are held instead"), message=result.error
		)
	return result


def _holds(
	replaced: dict[str, tuple[str, Lifetimes]], purged: PurgeResult | None, values: dict
) -> dict[str, int]:
	"""Path → the epoch second its URL may point to the edge again (only paths that must wait)."""
	if values.get("version_in_urls"):
		return {}
	now = time.time()
	holds = {}
	for path, (_old, life) in replaced.items():
		wait = life.browser if purged and purged.ok else life.longest
		if wait > 0:
			holds[path] = math.ceil(now + wait)
	_count(held=len(holds))
	return holds


def settle(
	landed: dict[str, str],
	previous: dict[str, str | None],
	parents: dict[str, str | None],
	cache_controls: dict[str, str],
) -> dict[str, int]:
	"""After uploads landed (path → SHA-256): purge what edges may keep of the versions they
	replaced (`previous`: the rows' record of the bucket's copy), and return the holds to promote
	them with. Files listing a held path wait for it."""
	if not landed:
		return {}
	values = settings.get_settings()
	replaced = _replaced(landed, previous, cache_controls)
	holds = _holds(replaced, _forget_at_edge(replaced, values), values)
	_remember({path: (sha, lifetimes(cache_controls.get(path, ""))) for path, sha in landed.items()})
	_hold_parents({parents[path]: until for path, until in holds.items() if parents.get(path)})
	return holds


def settle_deleted(deleted: dict[str, str | None], cache_control: str) -> None:
	"""After deletes landed (path → the version the bucket held): purge them, and hold those an edge
	may still serve, so their URLs answer locally (404) until it cannot; the others follow the
	settings again at once."""
	if not deleted:
		return
	values = settings.get_settings()
	replaced = _replaced(dict.fromkeys(deleted, DELETED), deleted, {p: cache_control for p in deleted})
	holds = _holds(replaced, _forget_at_edge(replaced, values), values)
	delivery_hash.hold_deleted(holds)
	delivery_hash.forget(path for path in deleted if path not in holds)
	_remember({path: (DELETED, Lifetimes(0, 0)) for path in deleted})


def _hold_parents(parents: dict[str, int]) -> None:
	if parents:
		redis.Redis.zadd(_redis(), _key(HELD_PARENTS), parents, gt=True)


def held_parents(paths: Iterable[str], now: float | None = None) -> set[str]:
	"""Those of `paths` that list a path still held: they are uploaded once its hold ends."""
	paths = list(paths)
	if not paths:
		return set()
	now = time.time() if now is None else now
	scores = redis.Redis.zmscore(_redis(), _key(HELD_PARENTS), paths)
	return {path for path, until in zip(paths, scores, strict=True) if until is not None and until > now}


def release(now: float | None = None) -> list[str]:
	"""End the holds that are over; returns the files listing them, to render again now."""
	now = time.time() if now is None else now
	delivery_hash.release(delivery_hash.ended_holds(now))
	key = _key(HELD_PARENTS)
	parents = [p.decode() for p in redis.Redis.zrangebyscore(_redis(), key, "-inf", now)]
	if parents:
		redis.Redis.zrem(_redis(), key, *parents)
	return parents


def check_purge() -> tuple[bool, str]:
	"""Test Connection's purge step: put a check object, fetch it through the CDN Base URL (the edge
	keeps it), replace it, purge, and fetch again: the new bytes must come back. (The canary itself
	is `no-store`: an edge never keeps it, so purging it would prove nothing.)"""
	config = purge_config()
	values = settings.get_settings()
	cdn = bucket.get_bucket(require_enabled=False)
	if not (config and cdn and values.get("cdn_base_url")):
		return False, _("Set CDN Purge, the Bucket and the CDN Base URL and save first.")
	url = f"{values['cdn_base_url'].rstrip('/')}/{PURGE_CHECK_PATH}"
	first, second = (
		canonical.dumps({"memora_storage": "purge check", "at": time.time(), "n": n}) for n in (1, 2)
	)
	cdn.put_canary(PURGE_CHECK_PATH, first, PURGE_CHECK_CACHE_CONTROL)
	edge_probe.fetch(url)
	cdn.put_canary(PURGE_CHECK_PATH, second, PURGE_CHECK_CACHE_CONTROL)
	result = purge(config, [url])
	if not result.ok:
		return False, _("The purge failed: {0}").format(result.error)
	after = edge_probe.fetch(url)
	if after == first:
		return False, _("The purge was accepted, but the CDN Base URL still serves the old check object.")
	if after != second:
		return False, _("The CDN Base URL does not serve the check object after the purge.")
	return True, _(
		"A purge reaches the edge: the CDN Base URL served the new check object ({0} purge requests)."
	).format(result.requests)
