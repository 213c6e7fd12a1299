"""CDN verification: the bucket compared with the local files into a Content Health Report, nightly or
on request, and Resync, which queues what it found missing or different."""

import time
from collections.abc import Callable

import frappe
from frappe import _

from memora_storage import alerts, bucket, content_files, jobs, progress, reports, settings
from memora_storage.utils import canonical
from memora_storage.utils.store import WriteResult
from memora_storage.utils.verify import VerifyReport
from memora_storage.utils.verify import verify as compare


def enqueue(user: str | None = None) -> bool:
	"""Queue a verification on the long queue; False while one is queued or running."""
	return jobs.enqueue_once(jobs.VERIFY, user=user)


def nightly() -> bool:
	"""Nightly (cron): verify the CDN if a bucket is configured; a run still in progress is not doubled."""
	return bool(bucket.get_bucket()) and enqueue()


def verify(user: str | None = None) -> "frappe.Document":
	"""Compare every local content file with the bucket and store the result as a report.

	Queued by Verify CDN Now for `user`, who sees its progress and is told when the report is ready; the
	nightly run has nobody to tell, so System Managers are alerted when the CDN differs.
	"""
	with progress.Task(_("CDN verification"), user=user) as task:
		cdn = bucket.get_bucket(require_enabled=False)
		if not cdn:
			frappe.throw(_("Set the Bucket in CDN Settings before verifying the CDN."))
		store = settings.content_store()
		started = time.monotonic()
		# One step the core does not report inside: hashing the local files beside the bucket listing.
		task.progress(1, 3, _("Comparing the local files with the bucket…"))
		result = compare(store.root, cdn)
		task.progress(2, 3, _("Saving the report…"))
		report = _save_verification(result, time.monotonic() - started)
		if report.status != "Healthy" and not user:
			alerts.notify_system_managers(
				_("Memora Storage: the CDN differs from the local files"),
				template="memora_storage_cdn_differs",
				args={"summary": report.summary},
				document_type=reports.DOCTYPE,
				document_name=report.name,
			)
		frappe.db.commit()
		task.report_done(report)
	return report


def _save_verification(result: VerifyReport, duration: float) -> "frappe.Document":
	problems = [
		*(reports.Problem("Missing on CDN", path) for path in result.missing),
		*(
			reports.Problem("Extra on CDN", path, detail=_("on the CDN but not on this server"))
			for path in result.extra
		),
		*(
			reports.Problem(
				"Mismatch on CDN",
				m.path,
				detail=_("local {0} bytes, CDN {1} bytes (ETag {2})").format(
					m.local_size, m.remote_size, m.remote_etag
				),
			)
			for m in result.mismatched
		),
	]
	summary = _(
		"{0} of {1} files match the CDN; {2} missing on the CDN, {3} only on the CDN, {4} differ"
	).format(
		result.matched, result.local_count, len(result.missing), len(result.extra), len(result.mismatched)
	)
	return reports.save_report(
		"CDN Verification",
		problems,
		summary,
		duration_seconds=duration,
		files_count=result.local_count,
		cdn_missing_count=len(result.missing),
		cdn_extra_count=len(result.extra),
		cdn_mismatch_count=len(result.mismatched),
	)


def resync(report: "frappe.Document", on_progress: Callable[[int, int], None] | None = None) -> int:
	"""Queue an upload of every path a verification found missing on or different from the CDN."""
	store = settings.content_store()
	wanted = [
		p for p in reports.report_problems(report) if p.problem in ("Missing on CDN", "Mismatch on CDN")
	]
	queued = []
	for done, problem in enumerate(wanted, 1):
		if store.exists(problem.path):
			data = store.read(problem.path)
			queued.append(
				content_files.queue_upload(
					WriteResult(problem.path, canonical.sha256(data), len(data), False)
				)
			)
		if on_progress:
			on_progress(done, len(wanted))
	frappe.db.commit()
	return len(queued)
