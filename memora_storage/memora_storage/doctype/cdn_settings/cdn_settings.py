# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

from urllib.parse import urlparse

import frappe
from frappe import _
from frappe.model.document import Document

from memora_storage import after_commit, bucket, content_files, failover, jobs, relink, settings
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.s3 import CdnError


class CDNSettings(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		access_key_id: DF.Data | None
		auto_failover: DF.Check
		bucket: DF.Data | None
		cache_control_leaf: DF.Data | None
		cache_control_listing: DF.Data | None
		cdn_base_url: DF.Data | None
		cdn_purge: DF.Literal["None", "HTTP PURGE (Varnish)", "CloudFront", "Cloudflare", "Fastly", "Bunny"]
		cors_allowed_origins: DF.SmallText | None
		current_base_url: DF.Data | None
		delivery_status: DF.SmallText | None
		enable_cdn: DF.Check
		endpoint_url: DF.Data | None
		etag_behaviour: DF.Literal["", "MD5 of the bytes", "Not the MD5"]
		failover_after: DF.Int
		health_check_end_hour: DF.Int
		health_check_start_hour: DF.Int
		key_prefix: DF.Data | None
		local_domain: DF.Data | None
		local_fallback_mode: DF.Check
		min_free_disk_percent: DF.Float
		probe_interval: DF.Int
		probe_results: DF.HTML | None
		purge_api_token: DF.Password | None
		purge_endpoint: DF.Data | None
		purge_zone_id: DF.Data | None
		recover_after: DF.Int
		regenerate_missing_files: DF.Check
		region: DF.Data | None
		secret_access_key: DF.Password | None
		version_in_urls: DF.Check

	# end: auto-generated types
	@property
	def current_base_url(self) -> str:
		"""Shown on the form so an administrator sees where URLs point right now. From this document's
		values: the copy every process reads is published only after the save commits, later than the
		response that carries the saved form back."""
		return _base_url(self)

	@property
	def delivery_status(self) -> str:
		"""Where URLs point and who decided: the administrator's settings or the health probe."""
		return failover.describe(settings.snapshot_values(self))

	def onload(self):
		self.set_onload("probes", failover.latest_probes())

	def validate(self):
		self.cache_control_listing = _listing_default(self)
		for fieldname in ("cdn_base_url", "local_domain", "endpoint_url", "purge_endpoint"):
			self.set(fieldname, (self.get(fieldname) or "").strip().rstrip("/"))
			if self.get(fieldname):
				validate_http_url(self.get(fieldname), self.meta.get_label(fieldname))
		self.key_prefix = (self.key_prefix or "").strip().strip("/")
		if self.key_prefix:
			self.key_prefix += "/"
		if self.enable_cdn:
			if not self.cdn_base_url:
				frappe.throw(
					_("Enter a CDN Base URL before enabling the CDN, or leave Enable CDN off."),
					title=_("CDN Base URL missing"),
				)
			if not self.bucket:
				frappe.throw(
					_("Enter the Bucket that the CDN serves before enabling the CDN."),
					title=_("Bucket missing"),
				)
		if self.min_free_disk_percent is not None and not 0 <= self.min_free_disk_percent < 100:
			frappe.throw(_("Minimum Free Disk (%) must be between 0 and 100."))
		if self.probe_interval and self.probe_interval < settings.MIN_PROBE_INTERVAL:
			frappe.throw(
				_("Probe Every (Seconds) must be at least {0}.").format(settings.MIN_PROBE_INTERVAL),
				title=_("Probe interval too short"),
			)
		for fieldname in ("failover_after", "recover_after"):
			if self.get(fieldname) is not None and self.get(fieldname) < 1:
				frappe.throw(
					_("{0} must be at least 1.").format(_(self.meta.get_label(fieldname))),
					title=_("Invalid threshold"),
				)
		for origin in bucket.cors_origins(self.cors_allowed_origins):
			validate_origin(origin)
		for fieldname in ("health_check_start_hour", "health_check_end_hour"):
			if not 0 <= (self.get(fieldname) or 0) <= 23:
				frappe.throw(
					_("{0} must be an hour from 0 to 23.").format(_(self.meta.get_label(fieldname))),
					title=_("Invalid hour"),
				)

	@frappe.whitelist()
	def apply_cors_rule(self) -> str:
		"""Write the bucket's CORS rule for CORS Allowed Origins, as saved."""
		frappe.only_for("System Manager")
		cdn = bucket.get_bucket(require_enabled=False)
		if not cdn:
			frappe.throw(_("Set the Bucket in CDN Settings and save before applying a CORS rule."))
		origins = bucket.saved_cors_origins()
		try:
			kept = cdn.apply_cors(origins)
		except CdnError as e:
			frappe.throw(str(e), title=_("CORS rule not applied"))
		message = _("Browsers on {0} may now fetch the content from the bucket.").format(", ".join(origins))
		if kept:
			message += " " + _("The bucket's {0} other CORS rule(s) were kept.").format(kept)
		return message

	def on_update(self):
		before = self.get_doc_before_save()
		values = settings.snapshot_values(self)
		# In this order: a relink reads the settings after it starts, so it always sees these.
		after_commit.once("publish-settings", lambda: settings.publish(values))
		if self.enable_cdn and not (before and before.enable_cdn):
			# Rows that waited while the CDN was off are sent now, not at the next dispatcher tick.
			content_files.request_drain_after_commit()
		if before and _judged_cdn(before) != _judged_cdn(self):
			# A verdict on another CDN, or on one no longer probed, says nothing of this one.
			failover.reset(_("CDN Settings changed: {0}").format(frappe.session.user))
		if before and _links(before) != _links(self):
			# Links inside written files follow the URL decision, so they must be re-linked; the relink
			# must know the bases they carry now to find them.
			old = _links(before)
			relink.remember_bases(more=[old.local_base_url, old.cdn_base_url.rstrip("/")])
			after_commit.once("relink", jobs.request_relink)


def _listing_default(doc: Document) -> str:
	"""Choosing a purge turns the default Cache-Control of listing files into the purged one (edges
	keep a day, browsers revalidate), and back; a value the administrator typed is kept."""
	value = (doc.cache_control_listing or "").strip()
	purged = (doc.cdn_purge or "None") != "None"
	defaults = (settings.CACHE_CONTROL_LISTING, settings.CACHE_CONTROL_LISTING_PURGED)
	if value in ("", *defaults):
		return defaults[purged]
	return value


def _base_url(doc: Document) -> str:
	return settings.url_settings(settings.snapshot_values(doc)).base_url


def _links(doc: Document) -> UrlSettings:
	"""What the links inside files depend on, the probe's verdict aside (it is the same before and after)."""
	return settings.url_settings(settings.snapshot_values(doc), cdn_down=False)


def _judged_cdn(doc: Document) -> tuple:
	"""What the probes judge: the edge they fetch from and the bucket uploads go to."""
	values = settings.snapshot_values(doc)
	return (
		values["enable_cdn"],
		values["cdn_base_url"],
		values["auto_failover"],
		doc.endpoint_url or "",
		doc.bucket or "",
	)


def validate_origin(origin: str) -> None:
	"""`*`, or scheme://host[:port] and nothing more, as browsers send in Origin; S3 allows one `*`
	wildcard in it (https://*.example.com)."""
	parsed = urlparse(origin)
	try:
		port_ok = parsed.port != 0
	except ValueError:  # a port that is not a number, or out of range
		port_ok = False
	if origin == "*" or (
		parsed.scheme in ("http", "https")
		and bool(parsed.hostname)
		and port_ok
		and origin == f"{parsed.scheme}://{parsed.netloc}"  # no path, query or fragment, not even empty
		and "@" not in parsed.netloc
		and origin.count("*") <= 1
	):
		return
	frappe.throw(
		_("CORS Allowed Origins: {0} is not an origin such as https://app.example.com, or *").format(
			frappe.bold(origin)
		),
		title=_("Invalid origin"),
	)


def validate_http_url(url: str, label: str) -> None:
	"""Refuse anything but an absolute http(s) URL, with the field's label in the message."""
	parsed = urlparse(url)
	try:
		valid = parsed.scheme in ("http", "https") and bool(parsed.hostname) and parsed.port != 0
	except ValueError:  # a port that is not a number, as a URL pasted twice gives
		valid = False
	if not valid:
		frappe.throw(
			_("{0} must be an absolute http:// or https:// URL, got {1}").format(_(label), frappe.bold(url)),
			title=_("Invalid URL"),
		)
	if parsed.query or parsed.fragment:
		frappe.throw(_("{0} must not contain '?' or '#': {1}").format(_(label), frappe.bold(url)))
