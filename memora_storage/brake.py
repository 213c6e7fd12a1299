"""A brake on deletion: no single action deletes more CDN objects than a threshold unless an
administrator confirms it.

rclone (`--max-delete`), Hugo deploy (`maxDeletes`, 256) and s3deploy (`-max-delete`) stop before a
mass deletion; so does this app, since a wrong Bucket or Key Prefix, a restored old database or a bug
can make every object look unknown or every file look deleted. The threshold is CDN Settings'
Deletion Brake, or, left at 0, the larger of 256 and 10 % of the bucket's objects under the prefix.

An action above it deletes nothing: it writes a Deletion Brake report listing every object it would
delete (a dry run), System Managers are told, and Confirm Deletion on that report deletes exactly
those objects. The actions that delete are the drain's deletes (a folder delete, Delete Orphans,
deleted documents: Content File rows to delete) and a verification's Delete Extra Objects. Resync
and recovery only upload; a change of Bucket, Endpoint or Key Prefix deletes nothing by itself.
"""

import math

import frappe
from frappe import _
from frappe.utils import cint

from memora_storage import alerts, bucket, content_files, jobs, reports, settings
from memora_storage.utils.s3 import CdnBucket

DEFAULT_LIMIT = 256
SHARE = 0.10  # of the bucket's objects under the key prefix
SCOPE = "Deletion Brake"
PROBLEM = "Held Deletion"
DRAIN, VERIFICATION = "Drain", "Verification"
CONFIRMED = "memora_storage:deletes_confirmed"  # paths whose drain delete an administrator confirmed
COUNTED = "memora_storage:bucket_objects"
COUNT_TTL_S = 3600


def limit_for(count: int, cdn: CdnBucket) -> int | None:
	"""The threshold when `count` deletions exceed it, else None. The bucket is listed only when the
	threshold depends on it and `count` is above the 256 floor."""
	setting = cint(frappe.db.get_single_value("CDN Settings", "deletion_brake"))
	if setting > 0:
		limit = setting
	elif count <= DEFAULT_LIMIT:
		return None
	else:
		limit = max(DEFAULT_LIMIT, math.ceil(SHARE * _objects(cdn)))
	return limit if count > limit else None


def _objects(cdn: CdnBucket) -> int:
	"""The bucket's objects under the key prefix, counted once an hour at most: a drain held by the
	brake looks every minute, and a large bucket takes a while to list."""
	name = f"{COUNTED}:{cdn.config.endpoint_host}/{cdn.config.bucket}/{cdn.config.key_prefix.strip('/')}"
	if (cached := frappe.cache.get_value(name)) is not None:
		return int(cached)
	count = sum(1 for _ in cdn.list())
	frappe.cache.set_value(name, count, expires_in_sec=COUNT_TTL_S)
	return count


def deletes_allowed(cdn: CdnBucket) -> set[str] | None:
	"""The paths a drain pass may delete on the CDN: None for all, unless the rows waiting to be
	deleted there (those not confirmed) are more than the threshold; then only the confirmed ones,
	and the others are listed in a Deletion Brake report once. Uploads always go: the held deletes
	are left out of the pass's query, so however many wait they never stand in front of an upload."""
	pending = content_files.pending_deletes()
	if not pending:
		return None
	confirmed = {path.decode() for path in frappe.cache.smembers(frappe.cache.make_key(CONFIRMED))}
	waiting = [path for path in pending if path not in confirmed]
	limit = limit_for(len(waiting), cdn)
	if limit is None:
		return None
	_hold(DRAIN, waiting, limit)
	return confirmed


def deleted(paths: list[str]) -> None:
	"""The drain deleted these: their confirmation is used up."""
	if paths:
		frappe.cache.srem(frappe.cache.make_key(CONFIRMED), *paths)


def delete_extra(report: "frappe.Document") -> int:
	"""Delete Extra Objects of a verification: the objects it found on the CDN that are still not
	files here; above the threshold nothing is deleted and a Deletion Brake report lists them."""
	cdn = bucket.get_bucket(require_enabled=False)
	store = settings.content_store()
	paths = [
		problem.path
		for problem in reports.report_problems(report)
		if problem.problem == "Extra on CDN" and not store.exists(problem.path)
	]
	limit = limit_for(len(paths), cdn)
	if limit is not None:
		_hold(VERIFICATION, paths, limit)
		return 0
	return _delete(cdn, paths)


def confirm(report: "frappe.Document") -> int:
	"""An administrator's Confirm Deletion: exactly the objects the report lists are deleted (the
	drain's through their rows, at its next pass)."""
	paths = [problem.path for problem in reports.report_problems(report) if problem.problem == PROBLEM]
	report.db_set("deletion_confirmed", 1)
	report.add_comment(
		"Info", _("Deletion of {0} CDN objects confirmed by {1}.").format(len(paths), frappe.session.user)
	)
	if report.deletion_source == DRAIN:
		if paths:
			frappe.cache.sadd(frappe.cache.make_key(CONFIRMED), *paths)
		frappe.db.commit()
		jobs.request_drain()
		return len(paths)
	count = _delete(bucket.get_bucket(require_enabled=False), paths)
	report.db_set("cdn_deleted_count", count)
	frappe.db.commit()
	return count


def _delete(cdn: CdnBucket, paths: list[str]) -> int:
	return sum(error is None for error in cdn.delete_many(paths).values())


def _hold(source: str, paths: list[str], limit: int) -> None:
	"""One Deletion Brake report per source while it waits for confirmation, and one notice."""
	if frappe.db.exists(
		"Content Health Report", {"scope": SCOPE, "deletion_source": source, "deletion_confirmed": 0}
	):
		return
	summary = _(
		"{0} CDN objects would be deleted, more than the deletion brake of {1}: nothing was deleted. "
		"Check the list, then Confirm Deletion."
	).format(len(paths), limit)
	report = reports.save_report(
		SCOPE,
		[reports.Problem(PROBLEM, path) for path in paths],
		summary,
		deletion_source=source,
		cdn_extra_count=len(paths),
	)
	alerts.notify_system_managers(
		_("Memora Storage: {0} CDN deletions wait for your confirmation").format(len(paths)),
		summary,
		document_type=reports.DOCTYPE,
		document_name=report.name,
	)
	frappe.db.commit()
