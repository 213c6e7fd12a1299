"""CDN Settings as every process sees them: a snapshot that follows a save on its next call (SC-002).

A settings save publishes its values to Redis once its commit has landed, into the delivery hash
(`delivery.py`), so a resolver call reads settings and paths in one round trip. The database is
read only when the field is missing (a flushed cache), and that copy is stored with NX, so it can
never overwrite what a save has just published: a worker whose transaction began before the save
must not pin the old values.
"""

import frappe
from frappe.model.document import Document
from frappe.utils import cint, flt, get_url

from memora_storage import delivery
from memora_storage.utils import paths
from memora_storage.utils.disk import DEFAULT_MIN_FREE_PERCENT
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.store import ContentStore

DOCTYPE = "CDN Settings"
DEFAULT_PROBE_INTERVAL = 60  # seconds: Frappe's scheduler ticks once a minute unless told otherwise
MIN_PROBE_INTERVAL = 5
DEFAULT_FAILOVER_AFTER = 2  # failed probes in a row
DEFAULT_RECOVER_AFTER = 3  # healthy probes in a row
CACHE_CONTROL_LISTING = "public, max-age=60"  # manifests and subject files: their URLs never change
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
	}


def get_settings() -> dict:
	"""The non-secret CDN Settings values, as of the last committed save."""
	if stored := delivery.stored_settings():
		return dict(stored)
	values = snapshot_values(frappe.db.get_singles_dict(DOCTYPE))
	delivery.fill_settings(values)
	return values


def publish(values: dict) -> None:
	"""Make every process use `values` from its next call on; run after the save has committed."""
	delivery.publish_settings(values)


def republish() -> None:
	"""After a migrate: the snapshot gains the fields this version added."""
	publish(snapshot_values(frappe.db.get_singles_dict(DOCTYPE)))


def url_settings(
	values: dict | None = None, site_url: str | None = None, cdn_down: bool | None = None
) -> UrlSettings:
	"""The resolver's snapshot: one per rendered file or API call; `site_url` stands for an empty Local
	Domain, `cdn_down` for the probe's verdict (read when not given), which counts only while
	automatic failover is on."""
	values = values or get_settings()
	if cdn_down is None:
		from memora_storage import failover

		cdn_down = failover.is_down()
	return UrlSettings(
		local_domain=values["local_domain"] or site_url or get_url(),
		enable_cdn=values["enable_cdn"],
		cdn_base_url=values["cdn_base_url"],
		local_fallback_mode=values["local_fallback_mode"],
		cdn_down=cdn_down and values.get("auto_failover", True),
		version_in_urls=values.get("version_in_urls", False),
	)


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
