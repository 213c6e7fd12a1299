"""CDN Settings as every process sees them: a snapshot that follows a save on its next call (SC-002).

The snapshot lives in Redis beside a version number that a settings save bumps after its commit.
A reader takes both in one round trip and ignores a snapshot stored under an older version, so a
process that read the database just before a save can never pin the old values in the cache.
"""

import json

import frappe
from frappe.utils import flt, get_url

from memora_storage.utils import paths
from memora_storage.utils.disk import DEFAULT_MIN_FREE_PERCENT
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.store import ContentStore

DOCTYPE = "CDN Settings"
SNAPSHOT_KEY = "memora_storage:settings"
VERSION_KEY = "memora_storage:settings_version"


def _keys() -> tuple[str, str]:
	return frappe.cache.make_key(SNAPSHOT_KEY), frappe.cache.make_key(VERSION_KEY)


def _read_from_db() -> dict:
	values = frappe.db.get_singles_dict(DOCTYPE, cast=True)
	return {
		"enable_cdn": bool(values.get("enable_cdn")),
		"cdn_base_url": (values.get("cdn_base_url") or "").strip(),
		"local_fallback_mode": bool(values.get("local_fallback_mode")),
		"local_domain": (values.get("local_domain") or "").strip(),
		"min_free_disk_percent": flt(values.get("min_free_disk_percent"), 3)
		if values.get("min_free_disk_percent") is not None
		else DEFAULT_MIN_FREE_PERCENT,
	}


def get_settings() -> dict:
	"""The non-secret CDN Settings values, fresh as of the last committed save."""
	snapshot_key, version_key = _keys()
	cached, version = frappe.cache.mget([snapshot_key, version_key])
	version = int(version or 0)
	if cached:
		entry = json.loads(cached)
		if entry["version"] == version:
			return entry["values"]
	values = _read_from_db()
	frappe.cache.set(snapshot_key, json.dumps({"version": version, "values": values}))
	return values


def invalidate() -> None:
	"""Make every process read the settings anew; called after the save is committed."""
	snapshot_key, version_key = _keys()
	frappe.cache.incr(version_key)
	frappe.cache.delete(snapshot_key)


def url_settings(values: dict | None = None) -> UrlSettings:
	"""The resolver's snapshot: one per rendered file or API call."""
	values = values or get_settings()
	return UrlSettings(
		local_domain=values["local_domain"] or get_url(),
		enable_cdn=values["enable_cdn"],
		cdn_base_url=values["cdn_base_url"],
		local_fallback_mode=values["local_fallback_mode"],
	)


def content_store() -> ContentStore:
	"""The site's content store, guarded by the configured minimum free disk space."""
	return ContentStore(
		root=paths.content_root(frappe.get_site_path()),
		lock_dir=frappe.get_site_path("locks", "memora_storage"),
		min_free_percent=get_settings()["min_free_disk_percent"],
	)
