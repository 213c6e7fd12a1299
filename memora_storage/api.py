"""Whitelisted methods: the URL API for frontends, and administrator actions on content files.

`get_content_url` is the one public URL call: import it in Python
(`from memora_storage.api import get_content_url`), call it in Jinja, or GET
`/api/method/memora_storage.api.get_content_url?path=units/U1.json` without logging in. Only the
HTTP calls are rate-limited: a page that renders a thousand URLs with the Jinja helper is one view.
"""

import functools
import json
import time
from collections.abc import Callable

import frappe
from frappe import _
from frappe.rate_limiter import rate_limit

from memora_storage import (
	after_commit,
	bucket,
	clock,
	content_files,
	delivery_hash,
	disk_guard,
	edge,
	failover,
	jobs,
	publishing,
	scans,
	settings,
	uploads,
	urls,
	verification,
)
from memora_storage.utils import paths
from memora_storage.utils.store import FileOperationError

MAX_BATCH = 1000


class InvalidContentPath(frappe.ValidationError):
	http_status_code = 400


def http_rate_limit(limit: int, seconds: int) -> Callable:
	"""Frappe's rate limit, counted only when the function is the endpoint this request calls.

	`frappe.rate_limiter.rate_limit` counts every call made during a request, so a Python or Jinja
	caller rendering many URLs would hit HTTP 429 on a busy page.
	"""

	def decorator(fn: Callable) -> Callable:
		limited = rate_limit(limit=limit, seconds=seconds)(fn)
		endpoint = f"{fn.__module__}.{fn.__name__}"

		@functools.wraps(fn)
		def wrapper(*args, **kwargs):
			if frappe.request and frappe.form_dict.cmd == endpoint:
				return limited(*args, **kwargs)
			return fn(*args, **kwargs)

		return wrapper

	return decorator


def _resolve(paths_: list[str]) -> dict[str, str]:
	try:
		return urls.urls_of(paths_)
	except paths.InvalidPathError as e:
		frappe.throw(_("Invalid content path: {0}").format(e), InvalidContentPath, title=_("Invalid path"))


@frappe.whitelist(allow_guest=True, methods=["GET"])
@http_rate_limit(limit=1200, seconds=60)
def get_content_url(path: str) -> str:
	"""The URL of a content path: the CDN only while it holds the path's current version, else this server."""
	clock.keep_running()  # students may be the site's only traffic: the app's clock must not stop
	return _resolve([path])[path]


@frappe.whitelist(allow_guest=True, methods=["GET", "POST"])
@http_rate_limit(limit=120, seconds=60)
def get_content_urls(paths: str | list[str]) -> dict[str, str]:
	"""URLs for up to 1,000 paths at once, from one settings snapshot and one Redis round trip."""
	if isinstance(paths, str):
		try:
			paths = json.loads(paths)
		except ValueError:
			frappe.throw(_("paths must be a JSON list of content paths"), InvalidContentPath)
	if not isinstance(paths, list):
		frappe.throw(_("paths must be a list of content paths"), InvalidContentPath)
	if len(paths) > MAX_BATCH:
		frappe.throw(
			_("At most {0} paths per call, got {1}").format(MAX_BATCH, len(paths)), InvalidContentPath
		)
	clock.keep_running()
	return _resolve(paths)


@frappe.whitelist(methods=["POST"])
def rollback(path: str) -> dict:
	"""Make the previous version of a content file live again; the CDN copy follows."""
	frappe.only_for("System Manager")
	try:
		paths.validate_relpath(path)
		delivery_hash.mark_local(path)  # the CDN keeps the version being replaced until the upload lands
		result = settings.content_store().rollback(path)
	except paths.InvalidPathError as e:
		frappe.throw(_("Invalid content path: {0}").format(e), InvalidContentPath)
	except FileOperationError as e:
		frappe.log_error(
			title=_("Memora Storage: could not roll back {0}").format(path)[:140],
			message=f"operation: {e.operation}\npath: {path}\nerrno: {e.errno}\nerror: {e}\ncause: {e.cause!r}",
		)
		frappe.db.commit()  # the log outlives the rollback that frappe.throw brings; nothing else changed
		frappe.throw(
			_("Could not roll back {0}: {1}").format(frappe.bold(path), e), title=_("Rollback failed")
		)
	row = content_files.references(path)
	if content_files.record_write(result, row.reference_doctype, row.reference_name, row.parent_path):
		publishing.write_parents([row.parent_path] if row.parent_path else [])
	frappe.msgprint(_("{0} rolled back to its previous version.").format(frappe.bold(path)), alert=True)
	return {"path": result.path, "sha256": result.sha256, "size": result.size}


@frappe.whitelist(methods=["POST"])
def rebuild_all() -> None:
	"""Queue a re-render of every content file (e.g. after restoring a backup); the user sees its progress."""
	frappe.only_for("System Manager")
	after_commit.once("rebuild", jobs.request_rebuild)
	frappe.msgprint(_("All content files are being rebuilt in the background."), alert=True)


@frappe.whitelist(methods=["POST"])
def retry_sync(names: str | list[str]) -> int:
	"""Start a fresh CDN schedule for Content File rows (an administrator's retry)."""
	frappe.only_for("System Manager")
	if isinstance(names, str):
		names = frappe.parse_json(names) if names.startswith("[") else [names]
	count = content_files.retry(names)
	frappe.msgprint(_("{0} content files queued for the CDN.").format(count), alert=True)
	return count


@frappe.whitelist(methods=["POST"])
def retry_all_failed() -> int:
	"""Retry every Content File whose CDN sync is Failed."""
	frappe.only_for("System Manager")
	return retry_sync(content_files.failed_names())


@frappe.whitelist(methods=["POST"])
def verify_cdn() -> bool:
	"""Queue a comparison of the bucket with the local files (it reads every file, so it is a job);
	the user is told when its report is ready. False if a verification is already running."""
	frappe.only_for("System Manager")
	if not bucket.get_bucket(require_enabled=False):
		frappe.throw(_("Set the Bucket in CDN Settings before verifying the CDN."))
	queued = verification.enqueue(user=frappe.session.user)
	if queued:
		frappe.msgprint(
			_("The CDN verification has started; you will be told when its report is ready."), alert=True
		)
	else:
		frappe.msgprint(
			_("A CDN verification is already running; its report will appear in Content Health Report.")
		)
	return queued


@frappe.whitelist(methods=["POST"])
def test_connection() -> dict:
	"""Write, read back, list and delete a probe object in the bucket; each step with its result."""
	frappe.only_for("System Manager")
	result = bucket.test_connection()
	steps = [
		{
			"name": step.name,
			"ok": step.ok,
			"warning": step.warning,
			"seconds": round(step.seconds, 3),
			"message": step.message,
		}
		for step in result.steps
	]
	ok = result.ok
	if result.ok and edge.purge_config():
		started = time.monotonic()
		purged, message = edge.check_purge()
		steps.append(
			{
				"name": "purge",
				"ok": purged,
				"warning": False,
				"seconds": round(time.monotonic() - started, 3),
				"message": message,
			}
		)
		ok = purged
	return {"ok": ok, "message": result.message, "steps": steps}


@frappe.whitelist(methods=["POST"])
def run_health_check(full: bool = False, deep: bool = False) -> bool:
	"""Queue a health scan now: a full one judges every file, a deep one also compares each with a
	fresh render. False if one is running."""
	frappe.only_for("System Manager")
	queued = scans.enqueue(full=full, deep=deep, scope="Manual")
	if queued:
		frappe.msgprint(
			_("The health scan has started; its report will appear in Content Health Report."), alert=True
		)
	else:
		frappe.msgprint(
			_("A health scan is already running; its report will appear in Content Health Report.")
		)
	return queued


@frappe.whitelist()
def disk_free(filters: str | dict | None = None) -> dict:
	"""Number card: free space of the disk holding the content."""
	frappe.only_for("System Manager")
	return disk_guard.disk_free()


@frappe.whitelist()
def last_health_problems(filters: str | dict | None = None) -> dict:
	"""Number card: problems found by the latest health scan."""
	frappe.only_for("System Manager")
	return scans.last_report_problems()


@frappe.whitelist()
def uploads_waiting(filters: str | dict | None = None) -> dict:
	"""Number card: files due for the CDN that wait because delivery is local (0 while uploads go)."""
	frappe.only_for("System Manager")
	return uploads.waiting_card()


@frappe.whitelist()
def failed_probes(filters: str | dict | None = None) -> dict:
	"""Number card: failed CDN probes in the last hour."""
	frappe.only_for("System Manager")
	return failover.failed_probes_card()


@frappe.whitelist()
def scheduler_minutes_ago(filters: str | dict | None = None) -> dict:
	"""Number card: minutes since the scheduler last ran the app's per-minute jobs (-1: never seen);
	CDN Settings says why when that is stale."""
	frappe.only_for("System Manager")
	minutes = clock.status()["minutes_ago"]
	return {
		"value": -1 if minutes is None else minutes,
		"fieldtype": "Int",
		"route": ["Form", "CDN Settings"],
	}


@frappe.whitelist()
def scheduler_status() -> dict:
	"""For CDN Settings: when the scheduler last ran the app's jobs and, when stale, why."""
	frappe.only_for("System Manager")
	return clock.status()


@frappe.whitelist()
def delivery_status() -> dict:
	"""For the Content File list: why due rows wait, if they do, and where URLs point."""
	frappe.only_for("System Manager")
	values = settings.get_settings()
	return {"waiting": uploads.waiting(), "delivery": failover.describe(values)}
