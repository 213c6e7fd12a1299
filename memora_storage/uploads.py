"""The CDN upload queue: one drain job per site sends what Content File rows say is due, pass after
pass, children before the files listing them, and the per-minute dispatcher keeps it going.

The schedule lives in the rows (attempts, next attempt at, first failure at), so worker restarts,
Redis flushes and deploys lose nothing: the dispatcher finds whatever is due. A pass claims its rows
(Pending → Syncing, with a token) before touching the bucket, so two drains never send the same
path at once and an older version can never land after a newer one (`content_files.py` owns those
transitions). A path goes back on the CDN in the delivery hash only once exactly its bytes landed.
"""

import datetime
import time

import frappe
from frappe import _
from frappe.utils import now_datetime

from memora_storage import (
	alerts,
	brake,
	bucket,
	clock,
	content_files,
	delivery_hash,
	edge,
	failover,
	jobs,
	publishing,
	settings,
)
from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, CdnError
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader

# Rows claimed per drain pass and sent concurrently over the bucket's connection pool: small enough
# that a pass against a hanging endpoint (2 tries of 15 s per request) ends well within the job's time.
PASS_LIMIT = 256
TIME_BUDGET_S = 600  # a drain then hands over to a fresh job (the long queue's timeout is 1,500 s)
COUNTS = ("claimed", "synced", "retry", "failed", "requeued", "rendered")  # what a drain reports


def drain(now: datetime.datetime | None = None) -> dict[str, int]:
	"""Queued (`jobs.request_drain`): pass after pass, send what is due until nothing is, then end.

	The request flag is cleared before the first pass, so a write that lands after the last pass
	looked (the race at the end) has queued the next drain already. Between passes the drain hands
	over to a fresh job when a relink is waiting (it is queued at the front), or when its time is up.
	"""
	jobs.started(jobs.DRAIN)
	totals = dict.fromkeys(COUNTS, 0)
	cdn = bucket.get_bucket()
	if not cdn:
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
			counts = run_pass(cdn, now)
			for key, value in counts.items():
				totals[key] += value
			if not counts["claimed"] and not counts["rendered"]:
				break
	return totals


def run_pass(cdn: CdnBucket, now: datetime.datetime | None = None) -> dict[str, int]:
	"""Claim the due rows that may go now, send them, record the outcomes, then re-render the files
	listing them whose due children have all gone (each once), so their links follow in the next pass."""
	counts = dict.fromkeys(COUNTS, 0)
	now = now or now_datetime()
	# A caller's `now` (a test's clock ahead of time) never hides rows written since, due at once.
	due_at = max(now, now_datetime())
	content_files.free_stuck()  # a dead drain's rows go with this pass, not a minute later
	ready = _ready(content_files.due(due_at, PASS_LIMIT, deletes=brake.deletes_allowed(cdn)))
	rows = content_files.claim(ready, due_at)
	if not rows:
		return counts
	try:
		outcomes, unreachable = _send(cdn, rows, now, content_files.may_be_stored(ready))
	except BaseException:
		content_files.release(rows[0].sync_claim)  # a dead pass leaves nothing Syncing for the dispatcher
		raise
	if unreachable:
		frappe.db.commit()
		failover.record_upload_failure(unreachable)  # one failed probe per pass, however many files
	counts["claimed"] = len(rows)
	for outcome in outcomes.values():
		counts[outcome] += 1
	parents = {row.parent_path for row in rows if row.parent_path}
	counts["rendered"] = publishing.write_parents(
		parents - content_files.listing_due_children(parents, due_at)
	)
	frappe.db.commit()
	return counts


def _send(
	cdn: CdnBucket, rows: list[frappe._dict], now: datetime.datetime, may_be_stored: set[str]
) -> tuple[dict[str, str], CdnError | None]:
	"""Upload and delete the claimed rows (renewing their lease meanwhile; those a dead drain may have
	stored are looked for by hash first), record each outcome, and serve what landed from the CDN;
	also the first error that says the bucket could not be reached."""
	uploader = Uploader(settings.content_store(), cdn)
	uploads = [row.path for row in rows if row.sync_operation == "Upload"]
	controls = cache_controls(uploads)
	token = rows[0].sync_claim
	sent = {
		r.path: r
		for r in uploader.upload_many(
			uploads,
			cache_control=controls,
			look_first=may_be_stored,
			heartbeat=lambda: content_files.renew(token),
			heartbeat_every=content_files.RENEW_SECONDS,
		)
	}
	deleted = cdn.delete_many([row.path for row in rows if row.sync_operation == "Delete"])
	brake.deleted([path for path, error in deleted.items() if error is None])
	bucket.remember_etag_behaviour(cdn)
	outcomes, repaired = content_files.finish(
		rows,
		{
			row.path: (sent[row.path].sha256, sent[row.path].error)
			if row.sync_operation == "Upload"
			else (None, deleted[row.path])
			for row in rows
		},
		now,
		lambda path, sha256: _holds(uploader.store, path, sha256),
	)
	landed = {
		row.path: sent[row.path].sha256
		for row in rows
		if outcomes[row.name] == "synced" and row.sync_operation == "Upload"
	}
	by_path = {row.path: row for row in rows}
	held = edge.settle(
		landed,
		{path: by_path[path].synced_sha256 for path in landed},
		{path: by_path[path].parent_path for path in landed},
		controls,
	)
	delivery_hash.promote(landed, marked=repaired, held=held)
	gone = {
		row.path: row.synced_sha256
		for row in rows
		if outcomes[row.name] == "synced" and row.sync_operation == "Delete"
	}
	edge.settle_deleted(gone, settings.get_settings()["cache_control_listing"])
	errors = [result.error for result in sent.values()] + list(deleted.values())
	unreachable = next(
		(e for e in errors if isinstance(e, CdnError) and e.kind in failover.CONNECTIVITY), None
	)
	return outcomes, unreachable


def cache_controls(paths: list[str]) -> dict[str, str]:
	"""Each file's Cache-Control: short for files listing others, which apps reach by a plain URL; long for
	the others only while their URLs carry their version (CDN Settings' Caching and CORS)."""
	values = settings.get_settings()
	if not (paths and values.get("version_in_urls")):
		return dict.fromkeys(paths, values.get("cache_control_listing", settings.CACHE_CONTROL_LISTING))
	listing = content_files.listing(paths)
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


def _ready(due: list[frappe._dict]) -> list[frappe._dict]:
	"""The due rows that may go now: children before the files that list them, a file listing a
	held path once the hold ended (its links then point to the CDN, and the edge's copy of the file
	is the version it gets again), and a deleted file only once the file that listed it has reached
	the CDN without it."""
	listing = {row.parent_path for row in due if row.parent_path and row.sync_operation == "Upload"}
	listing |= edge.held_parents(row.path for row in due if row.sync_operation == "Upload")
	in_flight = content_files.in_flight(
		{row.parent_path for row in due if row.parent_path and row.sync_operation == "Delete"}
	)
	return [
		row
		for row in due
		if not (row.sync_operation == "Upload" and row.path in listing)
		and not (row.sync_operation == "Delete" and row.parent_path in in_flight)
	]


def _holds(store: ContentStore, path: str, sha256: str | None) -> bool:
	try:
		return bool(sha256) and canonical.sha256(store.read(path)) == sha256
	except OSError:
		return False


MAX_LEVELS = 16  # a manifest is a few levels up; a loop no render could make stops here


def tick() -> None:
	"""Every scheduler tick, one job (each job is a fork of the worker): the probe, then the holds."""
	failover.tick()
	release_holds()


def release_holds() -> int:
	"""Every scheduler tick: end the holds that are over, and render the files listing those paths
	again, then theirs up to the manifests, so their links point to the CDN; returns files rendered."""
	parents = edge.release()
	rendered = 0
	for _level in range(MAX_LEVELS):
		if not parents:
			break
		rendered += publishing.write_parents(parents)
		parents = sorted({up for path in parents if (up := content_files.references(path).parent_path)})
	frappe.db.commit()
	return rendered


def dispatch(now: datetime.datetime | None = None) -> int:
	"""Every minute, the safety net: free rows whose lease ran out (their worker died), ask for a
	drain while anything is due (a drain lost with its worker is asked for again), alert on newly
	failed rows."""
	now = now or now_datetime()
	clock.beat()
	content_files.free_stuck()
	due = content_files.count_due(now)
	alert_failures()
	frappe.db.commit()
	if due and uploads_go() and bucket.get_bucket():
		jobs.request_drain()
	return due


def alert_failures() -> int:
	"""One notification and email for all rows that exhausted their retries since the last alert."""
	failed = content_files.failed_unalerted()
	if not failed:
		return 0
	alerts.notify_system_managers(
		_("Memora Storage: {0} content files could not reach the CDN").format(len(failed)),
		template="memora_storage_cdn_failed",
		args={"rows": failed[:20], "more": max(len(failed) - 20, 0)},
		document_type=content_files.DOCTYPE,
		document_name=failed[0].name if len(failed) == 1 else None,
	)
	content_files.mark_alerted([row.name for row in failed])
	return len(failed)


def waiting_card() -> dict:
	"""Number card: rows due for the CDN that wait while delivery is local; opens them in the list."""
	due = content_files.count_waiting() if waiting() else 0
	return {
		"value": due,
		"fieldtype": "Int",
		"route": ["List", content_files.DOCTYPE, "List"],
		"route_options": {"sync_status": "Pending"},
	}
