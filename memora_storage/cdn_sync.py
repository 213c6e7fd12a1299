"""The CDN side of Content File rows: upload and delete jobs, retries on the specified schedule,
alerts on exhaustion, manual retry, and verification of the bucket against the local files.

The schedule lives in the rows (attempts, next attempt at, first failure at), so worker restarts,
Redis flushes and deploys lose nothing: the per-minute dispatcher finds whatever is due. A job
claims its rows (Pending → Syncing, with a token) before touching the bucket, so two jobs never
send the same path at once and an older version can never land after a newer one.
"""

import datetime
import functools
import time
import uuid
from collections.abc import Iterable

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from memora_storage import alerts, content_files, reports, settings
from memora_storage.utils import backoff, canonical
from memora_storage.utils.s3 import CdnBucket, CdnError, ProbeResult, S3Config
from memora_storage.utils.store import WriteResult
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import verify

DOCTYPE = content_files.DOCTYPE
BATCH_SIZE = 100  # rows per job: uploaded concurrently over the bucket's connection pool
DISPATCH_LIMIT = 5000  # rows queued per dispatcher pass
STUCK_AFTER_MINUTES = 15  # a Syncing row this old lost its worker (the short queue times out at 5)
_ROW_FIELDS = ["name", "path", "sync_operation", "sha256", "sync_claim"]


def s3_config(require_enabled: bool = True) -> S3Config | None:
	"""The bucket settings, or None while Enable CDN is off (rows then wait as Pending, nothing lost)."""
	doc = frappe.get_single("CDN Settings")
	if (require_enabled and not doc.enable_cdn) or not doc.bucket:
		return None
	return S3Config(
		bucket=doc.bucket,
		endpoint_url=doc.endpoint_url or "",
		region=doc.region or "us-east-1",
		key_prefix=doc.key_prefix or "",
		access_key=doc.access_key_id or "",
		secret_key=doc.get_password("secret_access_key", raise_exception=False) or "",
		addressing_style="path" if doc.endpoint_url else "auto",
	)


@functools.lru_cache(maxsize=4)
def _bucket(config: S3Config) -> CdnBucket:
	"""One client per configuration and process (creating one costs ~50 ms).

	Uploads are confirmed by the ETag the PUT answers with, the server's MD5 of what it stored,
	checked against ours; a HEAD follows only when that is not conclusive. It halves the requests
	(benchmarks/bench_sync.py: 0.57 of rclone's time instead of 1.26) and proves the same bytes.
	"""
	return CdnBucket(config, confirm_with_head=False)


def get_bucket(require_enabled: bool = True) -> CdnBucket | None:
	config = s3_config(require_enabled)
	return _bucket(config) if config else None


def enqueue(names: list[str]) -> None:
	"""Queue a sync of these rows once the current transaction commits (deduplicated per row set)."""
	if not names or not settings.get_settings()["enable_cdn"]:
		return
	frappe.enqueue(
		"memora_storage.tasks.sync_rows",
		queue="short",
		job_id=f"memora_storage:sync:{names[0]}:{len(names)}",
		deduplicate=True,
		enqueue_after_commit=True,
		names=names,
	)


def sync_rows(names: list[str], now: datetime.datetime | None = None) -> dict[str, int]:
	"""Upload or delete the due rows among `names`; returns counts by outcome."""
	bucket = get_bucket()
	counts = {"synced": 0, "retry": 0, "failed": 0, "requeued": 0}
	if not bucket:
		return counts
	now = now or now_datetime()
	rows = _claim(names, now)
	if not rows:
		return counts
	uploader = Uploader(settings.content_store(), bucket)
	uploads = {
		r.path: r for r in uploader.upload_many([row.path for row in rows if row.sync_operation == "Upload"])
	}
	requeue = []
	for row in rows:
		if row.sync_operation == "Upload":
			sent, error = uploads[row.path].sha256, uploads[row.path].error
		else:
			sent, error = None, _delete(bucket, row.path)
		outcome = _finish(row, sent, error, now)
		counts[outcome] += 1
		if outcome == "requeued":
			requeue.append(row.name)
	frappe.db.commit()
	enqueue(requeue)
	return counts


def _claim(names: list[str], now: datetime.datetime) -> list[frappe._dict]:
	token = uuid.uuid4().hex
	frappe.db.sql(
		"""update `tabContent File` set sync_status='Syncing', sync_claim=%(token)s, modified=%(modified)s
		where name in %(names)s and sync_status='Pending' and next_attempt_at <= %(now)s""",
		{"token": token, "names": tuple(names), "now": now, "modified": now_datetime()},
	)
	frappe.db.commit()
	return frappe.get_all(
		DOCTYPE, filters={"sync_claim": token, "sync_status": "Syncing"}, fields=_ROW_FIELDS
	)


def _delete(bucket: CdnBucket, path: str) -> CdnError | None:
	try:
		bucket.delete(path)
	except CdnError as e:
		return e
	return None


def _finish(row: frappe._dict, sent: str | None, error: Exception | None, now: datetime.datetime) -> str:
	"""Record one row's outcome, unless it changed while we worked: then it is queued again at once."""
	current = frappe.db.get_value(
		DOCTYPE,
		row.name,
		["sync_operation", "sha256", "attempts", "first_failure_at", "sync_claim"],
		as_dict=True,
		for_update=True,
	)
	if not current or current.sync_claim != row.sync_claim:
		return "requeued" if current else "synced"
	changed = current.sync_operation != row.sync_operation or (
		row.sync_operation == "Upload" and current.sha256 != sent
	)
	if changed and not error:
		frappe.db.set_value(
			DOCTYPE, row.name, {**content_files.sync_values(current.sync_operation, None), "sync_claim": None}
		)
		return "requeued"
	if not error:
		if row.sync_operation == "Delete":
			frappe.db.delete(DOCTYPE, {"name": row.name})
		else:
			frappe.db.set_value(DOCTYPE, row.name, _synced_values(sent))
		return "synced"
	attempts = (current.attempts or 0) + 1
	first_failure = current.first_failure_at or now
	next_at = backoff.next_attempt_at(attempts, first_failure, now)
	frappe.db.set_value(
		DOCTYPE,
		row.name,
		{
			"sync_status": "Failed" if next_at is None else "Pending",
			"attempts": attempts,
			"first_failure_at": first_failure,
			"next_attempt_at": next_at,
			"last_error": str(error)[:1000],
			"sync_claim": None,
		},
	)
	return "failed" if next_at is None else "retry"


def _synced_values(sha256: str) -> dict:
	return {
		"sync_status": "Synced",
		"synced_sha256": sha256,
		"last_synced_at": now_datetime(),
		"attempts": 0,
		"next_attempt_at": None,
		"first_failure_at": None,
		"last_error": None,
		"sync_claim": None,
	}


def dispatch(now: datetime.datetime | None = None) -> int:
	"""Every minute: free rows whose worker died, queue every due row, alert on newly failed ones."""
	now = now or now_datetime()
	frappe.db.sql(
		"""update `tabContent File` set sync_status='Pending', sync_claim=null
		where sync_status='Syncing' and modified < %s""",
		add_to_date(now_datetime(), minutes=-STUCK_AFTER_MINUTES),
	)
	queued = 0
	if get_bucket():
		due = frappe.get_all(
			DOCTYPE,
			filters={"sync_status": "Pending", "next_attempt_at": ["<=", now]},
			pluck="name",
			order_by="next_attempt_at asc",
			limit=DISPATCH_LIMIT,
		)
		for start in range(0, len(due), BATCH_SIZE):
			batch = due[start : start + BATCH_SIZE]
			frappe.enqueue(
				"memora_storage.tasks.sync_rows",
				queue="short",
				job_id=f"memora_storage:sync-batch:{batch[0]}",
				deduplicate=True,
				names=batch,
			)
		queued = len(due)
	alert_failures()
	frappe.db.commit()
	return queued


def alert_failures() -> int:
	"""One notification and email for all rows that exhausted their retries since the last alert (FR-017)."""
	failed = frappe.get_all(
		DOCTYPE,
		filters={"sync_status": "Failed", "failure_alerted": 0},
		fields=["name", "path", "sync_operation", "last_error"],
		order_by="path asc",
	)
	if not failed:
		return 0
	listed = "".join(
		f"<li><code>{frappe.utils.escape_html(row.path)}</code> ({_(row.sync_operation)}): "
		f"{frappe.utils.escape_html(row.last_error or '')}</li>"
		for row in failed[:20]
	)
	more = _("<p>…and {0} more.</p>").format(len(failed) - 20) if len(failed) > 20 else ""
	alerts.notify_system_managers(
		_("Memora Storage: {0} content files could not reach the CDN").format(len(failed)),
		_(
			"<p>These files were retried for about an hour and are marked Failed. The local copies are "
			"intact and served in fallback mode. Fix the CDN, then use <b>Retry</b> on Content File.</p>"
		)
		+ f"<ul>{listed}</ul>{more}",
		document_type=DOCTYPE,
		document_name=failed[0].name if len(failed) == 1 else None,
	)
	frappe.db.set_value(DOCTYPE, {"name": ["in", [row.name for row in failed]]}, "failure_alerted", 1)
	return len(failed)


def retry(names: Iterable[str]) -> int:
	"""Start a fresh schedule for these rows (the manual retry of FR-017)."""
	names = [name for name in names if frappe.db.exists(DOCTYPE, name)]
	for name in names:
		operation = frappe.db.get_value(DOCTYPE, name, "sync_operation", for_update=True) or "Upload"
		frappe.db.set_value(DOCTYPE, name, {**content_files.sync_values(operation, None), "sync_claim": None})
	enqueue_in_batches(names)
	return len(names)


def enqueue_in_batches(names: list[str]) -> None:
	for start in range(0, len(names), BATCH_SIZE):
		enqueue(names[start : start + BATCH_SIZE])


def verify_bucket() -> "frappe.Document":
	"""Compare every local content file with the bucket and store the result as a report (US3 AC2)."""
	bucket = get_bucket(require_enabled=False)
	if not bucket:
		frappe.throw(_("Set the Bucket in CDN Settings before verifying the CDN."))
	store = settings.content_store()
	started = time.monotonic()
	result = verify(store.root, bucket)
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
	report = reports.save_report(
		"CDN Verification",
		problems,
		summary,
		duration_seconds=time.monotonic() - started,
		files_count=result.local_count,
		cdn_missing_count=len(result.missing),
		cdn_extra_count=len(result.extra),
		cdn_mismatch_count=len(result.mismatched),
	)
	if problems:
		alerts.notify_system_managers(
			_("Memora Storage: the CDN differs from the local files"),
			f"<p>{frappe.utils.escape_html(summary)}</p><p>{_('Open the report and use Resync to repair it.')}</p>",
			document_type=reports.DOCTYPE,
			document_name=report.name,
		)
	frappe.db.commit()
	return report


def resync(report: "frappe.Document") -> int:
	"""Queue an upload of every path a verification found missing on or different from the CDN."""
	store = settings.content_store()
	queued = []
	for problem in reports.report_problems(report):
		if problem.problem not in ("Missing on CDN", "Mismatch on CDN") or not store.exists(problem.path):
			continue
		data = store.read(problem.path)
		queued.append(
			content_files.queue_upload(WriteResult(problem.path, canonical.sha256(data), len(data), False))
		)
	frappe.db.commit()
	enqueue_in_batches(queued)
	return len(queued)


def test_connection() -> ProbeResult:
	"""Write, read back, list and delete a probe object with the saved settings, step by step."""
	bucket = get_bucket(require_enabled=False)
	if not bucket:
		frappe.throw(_("Set at least the Bucket in CDN Settings and save before testing the connection."))
	return bucket.probe()
