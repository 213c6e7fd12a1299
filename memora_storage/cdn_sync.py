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
from collections.abc import Callable, Iterable

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from memora_storage import (
	alerts,
	content,
	content_files,
	delivery,
	failover,
	jobs,
	progress,
	reports,
	settings,
)
from memora_storage.utils import backoff, canonical
from memora_storage.utils.s3 import CdnBucket, CdnError, ProbeResult, S3Config
from memora_storage.utils.store import ContentStore, WriteResult
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import VerifyReport, verify

DOCTYPE = content_files.DOCTYPE
# Rows claimed per drain pass and sent concurrently over the bucket's connection pool: small enough
# that a pass against a hanging endpoint (2 tries of 15 s per request) ends well within the job's time.
PASS_LIMIT = 256
TIME_BUDGET_S = 600  # a drain then hands over to a fresh job (the long queue's timeout is 1,500 s)
STUCK_AFTER_MINUTES = 15  # a Syncing row this old lost its worker
_ROW_FIELDS = ["name", "path", "parent_path", "sync_operation", "sha256", "sync_claim"]
COUNTS = ("claimed", "synced", "retry", "failed", "requeued", "rendered")  # what a drain reports


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
		etag_is_md5=ETAG_BEHAVIOURS.get(doc.etag_behaviour or ""),
	)


ETAG_BEHAVIOURS = {"MD5 of the bytes": True, "Not the MD5": False, "": None}


def remember_etag_behaviour(bucket: CdnBucket) -> None:
	"""Keep what uploads or Test Connection found out about the store's ETags (not touching `modified`,
	so an administrator's open form stays saveable)."""
	if bucket.etag_is_md5_seen is None:
		return
	value = next(label for label, is_md5 in ETAG_BEHAVIOURS.items() if is_md5 is bucket.etag_is_md5_seen)
	if frappe.db.get_single_value("CDN Settings", "etag_behaviour") != value:
		frappe.db.set_value("CDN Settings", None, "etag_behaviour", value, update_modified=False)


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


def drain(now: datetime.datetime | None = None) -> dict[str, int]:
	"""Queued (`jobs.request_drain`): pass after pass, send what is due until nothing is, then end.

	The request flag is cleared before the first pass, so a write that lands after the last pass
	looked (the race at the end) has queued the next drain already. Between passes the drain hands
	over to a fresh job when a relink is waiting (it is queued at the front), or when its time is up.
	"""
	jobs.started(jobs.DRAIN)
	totals = dict.fromkeys(COUNTS, 0)
	bucket = get_bucket()
	if not bucket:
		return totals
	deadline = time.monotonic() + TIME_BUDGET_S
	in_worker = bool(getattr(frappe.local, "job", None))  # else there is no queue to hand over to
	with content_files.drain_running():
		while True:
			failover.tick()  # a long drain holds the worker: the probes keep their interval meanwhile
			if not uploads_go():
				break  # delivery is local: what is due waits for the CDN (`waiting`), nothing is lost
			if in_worker and (jobs.is_requested(jobs.RELINK) or time.monotonic() > deadline):
				jobs.request(jobs.DRAIN)
				break
			counts = run_pass(bucket, now)
			for key, value in counts.items():
				totals[key] += value
			if not counts["claimed"] and not counts["rendered"]:
				break
	return totals


def run_pass(bucket: CdnBucket, now: datetime.datetime | None = None) -> dict[str, int]:
	"""Claim the due rows that may go now, send them, record the outcomes, then re-render the files
	listing them whose due children have all gone (each once), so their links follow in the next pass."""
	counts = dict.fromkeys(COUNTS, 0)
	now = now or now_datetime()
	# A caller's `now` (a test's clock ahead of time) never hides rows written since, due at once.
	due_at = max(now, now_datetime())
	rows = _claim(_ready(_due(due_at)), due_at)
	if not rows:
		return counts
	try:
		outcomes, unreachable = _send(bucket, rows, now)
	except BaseException:
		_release(rows[0].sync_claim)  # a pass that dies leaves nothing Syncing for the dispatcher to free
		raise
	if unreachable:
		frappe.db.commit()
		failover.record_upload_failure(unreachable)  # one failed probe per pass, however many files
	counts["claimed"] = len(rows)
	for outcome in outcomes.values():
		counts[outcome] += 1
	parents = {row.parent_path for row in rows if row.parent_path}
	counts["rendered"] = content.write_parents(parents - _listing_due_children(parents, due_at))
	frappe.db.commit()
	return counts


def _listing_due_children(parents: set[str], due_at: datetime.datetime) -> set[str]:
	"""The files among `parents` that list children still due: rendered once the last of them has gone,
	not once per pass (a parent would otherwise be rendered in every pass of a scattered backlog)."""
	if not parents:
		return set()
	return set(
		frappe.db.sql(
			"""select distinct parent_path from `tabContent File`
			where parent_path in %(parents)s and sync_operation='Upload'
			and (sync_status='Syncing' or (sync_status='Pending' and next_attempt_at <= %(due_at)s))""",
			{"parents": tuple(parents), "due_at": due_at},
			pluck=True,
		)
	)


def _send(
	bucket: CdnBucket, rows: list[frappe._dict], now: datetime.datetime
) -> tuple[dict[str, str], CdnError | None]:
	"""Upload and delete the claimed rows, record each outcome, and serve what landed from the CDN;
	also the first error that says the bucket could not be reached."""
	uploader = Uploader(settings.content_store(), bucket)
	uploads = [row.path for row in rows if row.sync_operation == "Upload"]
	sent = {r.path: r for r in uploader.upload_many(uploads, cache_control=cache_controls(uploads))}
	deleted = bucket.delete_many([row.path for row in rows if row.sync_operation == "Delete"])
	remember_etag_behaviour(bucket)
	repaired: dict[str, str] = {}
	outcomes = _finish(
		uploader.store,
		repaired,
		rows,
		{
			row.path: (sent[row.path].sha256, sent[row.path].error)
			if row.sync_operation == "Upload"
			else (None, deleted[row.path])
			for row in rows
		},
		now,
	)
	landed = {
		row.path: sent[row.path].sha256
		for row in rows
		if outcomes[row.name] == "synced" and row.sync_operation == "Upload"
	}
	delivery.promote(landed, marked=repaired)
	delivery.forget(
		row.path for row in rows if outcomes[row.name] == "synced" and row.sync_operation == "Delete"
	)
	errors = [result.error for result in sent.values()] + list(deleted.values())
	unreachable = next(
		(e for e in errors if isinstance(e, CdnError) and e.kind in failover.CONNECTIVITY), None
	)
	return outcomes, unreachable


def cache_controls(paths: list[str]) -> dict[str, str]:
	"""Each file's Cache-Control: short for files listing others, whose URLs never change; long for
	the others only while their URLs carry their version (CDN Settings' Caching and CORS)."""
	values = settings.get_settings()
	if not (paths and values.get("version_in_urls")):
		return dict.fromkeys(paths, values.get("cache_control_listing", settings.CACHE_CONTROL_LISTING))
	listing = set(
		frappe.get_all(DOCTYPE, filters={"parent_path": ["in", paths]}, pluck="parent_path", distinct=True)
	)
	return {
		path: values["cache_control_listing"] if path in listing else values["cache_control_leaf"]
		for path in paths
	}


def uploads_go() -> bool:
	"""Uploads and deletes run only while URLs point to the CDN: while delivery is local no client
	reads it, and the files re-linked to local would only be sent to be replaced when it returns."""
	return settings.url_settings().uses_cdn


def waiting() -> str | None:
	"""Why due rows are not being sent, for the Content File list and the workspace; None when they are."""
	values = settings.get_settings()
	if not values["enable_cdn"]:
		return _("the CDN is off")
	if values["local_fallback_mode"]:
		return _("Local Fallback Mode is on")
	if not uploads_go():
		return _("the CDN is down (health probe)")
	return None


def _release(token: str) -> None:
	frappe.db.rollback()
	frappe.db.sql(
		"update `tabContent File` set sync_status='Pending', sync_claim=null where sync_claim=%s and sync_status='Syncing'",
		token,
	)
	frappe.db.commit()


def _due(now: datetime.datetime) -> list[frappe._dict]:
	return frappe.get_all(
		DOCTYPE,
		filters={"sync_status": "Pending", "next_attempt_at": ["<=", now]},
		fields=_ROW_FIELDS,
		order_by="next_attempt_at asc",
		limit=PASS_LIMIT,
	)


def _ready(due: list[frappe._dict]) -> list[frappe._dict]:
	"""The due rows that may go now: children before the files that list them, and a deleted file
	only once the file that listed it has reached the CDN without it."""
	listing = {row.parent_path for row in due if row.parent_path and row.sync_operation == "Upload"}
	parents = {row.parent_path for row in due if row.parent_path and row.sync_operation == "Delete"}
	in_flight = set()
	if parents:
		in_flight = set(
			frappe.get_all(
				DOCTYPE,
				filters={
					"name": ["in", [content_files.row_name(path) for path in parents]],
					"sync_status": ["in", ["Pending", "Syncing"]],
				},
				pluck="path",
			)
		)
	return [
		row
		for row in due
		if not (row.sync_operation == "Upload" and row.path in listing)
		and not (row.sync_operation == "Delete" and row.parent_path in in_flight)
	]


def _claim(rows: list[frappe._dict], now: datetime.datetime) -> list[frappe._dict]:
	if not rows:
		return []
	token = uuid.uuid4().hex
	# SKIP LOCKED: a row a save holds right now waits for the next pass; the drain never waits on a
	# lock, so it can never be one side of a deadlock with the saves it runs beside.
	names = frappe.db.sql(
		"""select name from `tabContent File`
		where name in %(names)s and sync_status='Pending' and next_attempt_at <= %(now)s
		for update skip locked""",
		{"names": tuple(row.name for row in rows), "now": now},
		pluck=True,
	)
	if names:
		frappe.db.sql(
			"""update `tabContent File` set sync_status='Syncing', sync_claim=%(token)s, modified=%(modified)s
			where name in %(names)s""",
			{"token": token, "names": tuple(names), "modified": now_datetime()},
		)
	frappe.db.commit()
	return frappe.get_all(
		DOCTYPE, filters={"sync_claim": token, "sync_status": "Syncing"}, fields=_ROW_FIELDS
	)


FINISH_WAIT_S = 30.0  # how long the drain waits for saves holding claimed rows before leaving them


def _finish(
	store: ContentStore,
	repaired: dict[str, str],
	rows: list[frappe._dict],
	results: dict[str, tuple[str | None, Exception | None]],
	now: datetime.datetime,
) -> dict[str, str]:
	"""Record each claimed row's outcome in a few statements; a row that changed while we worked
	(a new version, a delete) is queued again at once, so the CDN never ends on an older version.

	Rows are taken with SKIP LOCKED, as in `_claim`: one a save holds is finished once it commits.
	`repaired` receives the rows whose recorded version was stale (path → the SHA-256 they recorded).
	"""
	outcomes: dict[str, str] = {}
	waiting = {row.name: row for row in rows}
	deadline = time.monotonic() + FINISH_WAIT_S
	while waiting:
		locked = frappe.db.sql(
			"""select name, sync_operation, sha256, attempts, first_failure_at, sync_claim
			from `tabContent File` where name in %(names)s for update skip locked""",
			{"names": tuple(waiting)},
			as_dict=True,
		)
		pairs = [(waiting.pop(row.name), row) for row in locked]
		_record_outcomes(store, repaired, pairs, results, now, outcomes)
		frappe.db.commit()
		if waiting:
			gone = set(waiting) - set(
				frappe.get_all(DOCTYPE, filters={"name": ["in", list(waiting)]}, pluck="name")
			)
			for name in gone:
				outcomes[name] = "requeued"  # deleted meanwhile: nothing left to record
				del waiting[name]
		if waiting and time.monotonic() > deadline:
			for name in waiting:  # still Syncing: the dispatcher frees them later
				outcomes[name] = "requeued"
			break
		if waiting:
			time.sleep(0.01)
	return outcomes


def _record_outcomes(
	store: ContentStore,
	repaired: dict[str, str],
	pairs: list[tuple[frappe._dict, frappe._dict]],
	results: dict[str, tuple[str | None, Exception | None]],
	now: datetime.datetime,
	outcomes: dict[str, str],
) -> None:
	"""(claimed row, its locked current state) pairs: their outcomes, in one statement per kind."""
	synced, deleted, requeued = [], [], {}
	for row, now_row in pairs:
		sent, error = results[row.path]
		if now_row.sync_claim != row.sync_claim:
			outcomes[row.name] = "requeued"  # freed as stuck and claimed anew
			continue
		changed = now_row.sync_operation != row.sync_operation or (
			row.sync_operation == "Upload" and now_row.sha256 != sent
		)
		if changed and not error and now_row.sync_operation == row.sync_operation == "Upload":
			if _holds(store, row.path, sent):
				# What we sent is what the file holds now: the row's version was stale (a write whose
				# record was lost, or two renders recorded out of order). Sending it again would loop.
				frappe.db.set_value(
					DOCTYPE,
					row.name,
					{"sha256": sent, "synced_sha256": sent, "last_synced_at": now_datetime(), **_SYNCED},
				)
				repaired[row.path] = now_row.sha256
				outcomes[row.name] = "synced"
				continue
		if changed and not error:
			requeued.setdefault(now_row.sync_operation, []).append(row.name)
			outcomes[row.name] = "requeued"
		elif not error:
			(deleted if row.sync_operation == "Delete" else synced).append(row.name)
			outcomes[row.name] = "synced"
		else:
			outcomes[row.name] = _record_error(now_row, error, now)
	if synced:
		frappe.db.sql(
			"""update `tabContent File` set sync_status='Synced', synced_sha256=sha256, last_synced_at=%(now)s,
			attempts=0, next_attempt_at=null, first_failure_at=null, last_error=null, sync_claim=null
			where name in %(names)s""",
			{"names": tuple(synced), "now": now_datetime()},
		)
	if deleted:
		frappe.db.delete(DOCTYPE, {"name": ["in", deleted]})
	for operation, names in requeued.items():
		frappe.db.set_value(
			DOCTYPE,
			{"name": ["in", names]},
			{**content_files.sync_values(operation, None), "sync_claim": None},
			update_modified=False,
		)


_SYNCED = {
	"sync_status": "Synced",
	"attempts": 0,
	"next_attempt_at": None,
	"first_failure_at": None,
	"last_error": None,
	"sync_claim": None,
}


def _holds(store: ContentStore, path: str, sha256: str | None) -> bool:
	try:
		return bool(sha256) and canonical.sha256(store.read(path)) == sha256
	except OSError:
		return False


def _record_error(row: frappe._dict, error: Exception, now: datetime.datetime) -> str:
	attempts = (row.attempts or 0) + 1
	first_failure = row.first_failure_at or now
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


def dispatch(now: datetime.datetime | None = None) -> int:
	"""Every minute, the safety net: free rows whose worker died, ask for a drain while anything is
	due (a drain lost with its worker is asked for again), alert on newly failed rows."""
	now = now or now_datetime()
	frappe.db.sql(
		"""update `tabContent File` set sync_status='Pending', sync_claim=null
		where sync_status='Syncing' and modified < %s""",
		add_to_date(now_datetime(), minutes=-STUCK_AFTER_MINUTES),
	)
	due = frappe.db.count(DOCTYPE, {"sync_status": "Pending", "next_attempt_at": ["<=", now]})
	alert_failures()
	frappe.db.commit()
	if due and uploads_go() and get_bucket():
		jobs.request_drain()
	return due


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
	alerts.notify_system_managers(
		_("Memora Storage: {0} content files could not reach the CDN").format(len(failed)),
		template="memora_storage_cdn_failed",
		args={"rows": failed[:20], "more": max(len(failed) - 20, 0)},
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
	if names:
		content_files.request_drain_after_commit()
	return len(names)


def verify_job_id() -> str:
	"""One id for every CDN verification of the site (the nightly one and Verify CDN Now), so two never overlap."""
	return f"memora_storage:verify-cdn:{frappe.local.site}"


def verify_bucket(user: str | None = None) -> "frappe.Document":
	"""Compare every local content file with the bucket and store the result as a report (US3 AC2).

	Queued by Verify CDN Now for `user`, who sees its progress and is told when the report is ready; the
	nightly run has nobody to tell, so System Managers are alerted when the CDN differs.
	"""
	with progress.Task(_("CDN verification"), user=user) as task:
		bucket = get_bucket(require_enabled=False)
		if not bucket:
			frappe.throw(_("Set the Bucket in CDN Settings before verifying the CDN."))
		store = settings.content_store()
		started = time.monotonic()
		# One step the core does not report inside: hashing the local files beside the bucket listing.
		task.progress(1, 3, _("Comparing the local files with the bucket…"))
		result = verify(store.root, bucket)
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
		task.done(
			report.summary,
			indicator="green" if report.status == "Healthy" else "orange",
			doctype=reports.DOCTYPE,
			name=report.name,
		)
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


def test_connection() -> ProbeResult:
	"""Write, read back, list and delete a probe object with the saved settings, step by step."""
	bucket = get_bucket(require_enabled=False)
	if not bucket:
		frappe.throw(_("Set at least the Bucket in CDN Settings and save before testing the connection."))
	origins = cors_origins(frappe.db.get_single_value("CDN Settings", "cors_allowed_origins"))
	result = bucket.probe(cors_origins=origins)
	remember_etag_behaviour(bucket)
	return result


def cors_origins(value: str | None) -> list[str]:
	"""CDN Settings' CORS Allowed Origins, one per line; `*` when left empty."""
	return [line.strip().rstrip("/") for line in (value or "*").splitlines() if line.strip()] or ["*"]


def waiting_card() -> dict:
	"""Number card: rows due for the CDN that wait while delivery is local; opens them in the list."""
	due = frappe.db.count(DOCTYPE, {"sync_status": "Pending"}) if waiting() else 0
	return {
		"value": due,
		"fieldtype": "Int",
		"route": ["List", DOCTYPE, "List"],
		"route_options": {"sync_status": "Pending"},
	}
