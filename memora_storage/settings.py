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


def snapshot_values(source: dict | Document) -> dict:
	"""The non-secret values every process needs, from a settings document or its stored fields."""
	min_free = source.get("min_free_disk_percent")
	return {
		"enable_cdn": bool(cint(source.get("enable_cdn"))),
		"cdn_base_url": (source.get("cdn_base_url") or "").strip(),
		"local_fallback_mode": bool(cint(source.get("local_fallback_mode"))),
		"local_domain": (source.get("local_domain") or "").strip(),
		"min_free_disk_percent": DEFAULT_MIN_FREE_PERCENT if min_free in (None, "") else flt(min_free),
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


def url_settings(values: dict | None = None, site_url: str | None = None) -> UrlSettings:
	"""The resolver's snapshot: one per rendered file or API call; `site_url` stands for an empty Local Domain."""
	values = values or get_settings()
	return UrlSettings(
		local_domain=values["local_domain"] or site_url or get_url(),
		enable_cdn=values["enable_cdn"],
		cdn_base_url=values["cdn_base_url"],
		local_fallback_mode=values["local_fallback_mode"],
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
