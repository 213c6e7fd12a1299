"""CDN Settings and the probe's verdict as every process sees them: a snapshot that follows a save on
its next call.

A settings save publishes its values to Redis once its commit has landed, into the delivery hash
(`delivery_hash.py`), so a URL decision reads settings, verdict and paths in one round trip. The
database is read only when a field is missing (a flushed cache), and that copy is stored with NX,
so it can never overwrite what a save has just published: a worker whose transaction began before
the save must not pin the old values. The verdict is written by `failover.py`; it is read here.
"""

import datetime
import functools

import frappe
from frappe.model.document import Document
from frappe.utils import cint, flt, get_url

from memora_storage import delivery_hash
from memora_storage.utils import paths
from memora_storage.utils.disk import DEFAULT_MIN_FREE_PERCENT
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.store import ContentStore

DOCTYPE = "CDN Settings"
HEALTH = "CDN Health"  # the single the probe's verdict is recorded in
DOWN = "Down"
DEFAULT_PROBE_INTERVAL = 60  # seconds: Frappe's scheduler ticks once a minute unless told otherwise
MIN_PROBE_INTERVAL = 5
DEFAULT_FAILOVER_AFTER = 2  # failed probes in a row
DEFAULT_RECOVER_AFTER = 3  # healthy probes in a row
CACHE_CONTROL_LISTING = "public, max-age=60"  # manifests and subject files: linked by plain URLs
# With a CDN Purge: edges keep a day (a purge ends it), browsers revalidate each time, so an edited
# file's URL is back on the CDN as soon as the purge is confirmed (edge.py).
CACHE_CONTROL_LISTING_PURGED = "public, max-age=0, s-maxage=86400"
CACHE_CONTROL_LEAF = "public, max-age=31536000, immutable"  # only under versioned URLs


def snapshot_values(source: dict | Document) -> dict:
	"""The non-secret values every process needs, from a settings document or its stored fields."""
	min_free = source.get("min_free_disk_percent")
	return {
		"enable_cdn": bool(cint(source.get("enable_cdn"))),
		"cdn_base_url": (source.get("cdn_base_url") or "").strip(),
		"local_fallback_mode": bool(cint(source.get("local_fallback_mode"))),
		"local_domain": (source.get("local_domain") or "").strip(),
		"min_free_disk_percent": DEFAULT_MIN_FREE_PERCENT if min_free in (None, "") else flt(min_free),
		"auto_failover": bool(cint(source.get("auto_failover", 1))),
		"probe_interval": max(
			cint(source.get("probe_interval") or DEFAULT_PROBE_INTERVAL), MIN_PROBE_INTERVAL
		),
		"failover_after": max(cint(source.get("failover_after") or DEFAULT_FAILOVER_AFTER), 1),
		"recover_after": max(cint(source.get("recover_after") or DEFAULT_RECOVER_AFTER), 1),
		"version_in_urls": bool(cint(source.get("version_in_urls"))),
		"cache_control_listing": (source.get("cache_control_listing") or "").strip() or CACHE_CONTROL_LISTING,
		"cache_control_leaf": (source.get("cache_control_leaf") or "").strip() or CACHE_CONTROL_LEAF,
		"cdn_purge": source.get("cdn_purge") or "None",
	}


def get_settings() -> dict:
	"""The non-secret CDN Settings values, as of the last committed save."""
	if stored := delivery_hash.stored_settings():
		return dict(stored)
	values = saved_values()
	delivery_hash.fill_settings(values)
	return values


def saved_values() -> dict:
	"""The snapshot's values as the database holds them (when Redis lost the published copy)."""
	return snapshot_values(frappe.db.get_singles_dict(DOCTYPE))


def publish(values: dict) -> None:
	"""Make every process use `values` from its next call on; run after the save has committed."""
	delivery_hash.publish_settings(values)


def health_record() -> dict:
	"""The CDN Health single with its field types; a date never set is None (Frappe casts it to year 1,
	which would read as a real date: "failing since 01-01-0001")."""
	health = frappe.db.get_singles_dict(HEALTH, cast=True)
	return {
		key: None if isinstance(value, datetime.datetime) and value.year == 1 else value
		for key, value in health.items()
	}


def stored_verdict() -> dict:
	"""The probe's verdict as the database holds it: the copy every process reads lives in Redis."""
	health = health_record()
	return {"down": health.get("state") == DOWN, "since": str(health.get("changed_at") or "")}


def is_cdn_down() -> bool:
	"""Whether the probes took the CDN for down (whatever the settings say)."""
	values = delivery_hash.stored_failover()
	if values is None:
		values = stored_verdict()
		delivery_hash.fill_failover(values)
	return bool(values["down"])


def republish() -> None:
	"""After a migrate: the snapshot gains the fields this version added."""
	publish(saved_values())


def url_settings(
	values: dict | None = None, site_url: str | None = None, cdn_down: bool | None = None
) -> UrlSettings:
	"""The resolver's snapshot: one per rendered file or API call; `site_url` stands for an empty Local
	Domain, `cdn_down` for the probe's verdict (read when not given), which counts only while
	automatic failover is on."""
	values = values or get_settings()
	if cdn_down is None:
		cdn_down = is_cdn_down()
	return UrlSettings(
		local_domain=values["local_domain"] or site_url or get_url(),
		enable_cdn=values["enable_cdn"],
		cdn_base_url=values["cdn_base_url"],
		local_fallback_mode=values["local_fallback_mode"],
		cdn_down=cdn_down and values.get("auto_failover", True),
		version_in_urls=values.get("version_in_urls", False),
	)


def url_settings_of(raw: bytes, failover: bytes | None = None) -> UrlSettings:
	"""The snapshot of the delivery hash's raw settings and verdict fields."""
	values = delivery_hash.parse(raw)
	return _url_settings(raw, failover, "" if values["local_domain"] else get_url())


@functools.lru_cache(maxsize=64)
def _url_settings(raw: bytes, failover: bytes | None, site_url: str) -> UrlSettings:
	down = bool(failover and delivery_hash.parse(failover)["down"])
	return url_settings(delivery_hash.parse(raw), site_url, cdn_down=down)


def content_store() -> ContentStore:
	"""The site's content store, guarded by the configured minimum free disk space.

	Backups and temp files go to `private/memora_content`, which nothing serves; `memora_private_root` in
	site_config names another folder, for a site whose `public/files` is on another filesystem.
	"""
	site = frappe.get_site_path()
	return ContentStore(
		root=paths.content_root(site),
		lock_dir=frappe.get_site_path("locks", "memora_storage"),
		min_free_percent=get_settings()["min_free_disk_percent"],
		private_root=frappe.conf.get("memora_private_root") or paths.private_root(site),
	)
