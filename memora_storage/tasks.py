"""Scheduled and queued jobs: CDN sync and its dispatcher, re-linking, retrying failed writes, health
scans and the disk guard."""

import frappe
from frappe import _

from memora_storage import (
	cdn_sync,
	content,
	content_files,
	disk_guard,
	failover,
	health,
	jobs,
	relink,
	settings,
)
from memora_storage.utils import paths
from memora_storage.utils.store import ContentStore, FileOperationError


def _enqueue_long_once(method: str, key: str, **kwargs) -> None:
	"""Queue a long job unless the same job for this site is already queued or running."""
	frappe.enqueue(
		f"memora_storage.tasks.{method}",
		queue="long",
		job_id=f"memora_storage:{key}:{frappe.local.site}",
		deduplicate=True,
		**kwargs,
	)


def relink_all() -> dict[str, int]:
	"""Queued (`jobs.request_relink`): rewrite every link in every file as the settings and the probe
	say when the job starts, without a render; a change during the run queues the next run."""
	return relink.relink()


def rebuild_all() -> dict[str, int]:
	"""Queued (`jobs.request_rebuild`): render every content file again from the database."""
	jobs.started(jobs.REBUILD)
	return content.write_all()


def retry_pending_writes() -> int:
	"""Every minute: finish the file work a full disk or a permission error stopped; returns files done."""
	rows = content_files.pending_writes()
	if not rows:
		return 0
	ctx = content.new_context()
	store = settings.content_store()
	written = 0
	for row in rows:
		try:
			written += _retry(row, ctx, store)
		except Exception as e:  # one document that cannot be handled must not hold up the others
			content_files.record_render_failure(row.path, row.reference_doctype, row.reference_name, e)
	frappe.db.commit()
	return written


def _retry(row: frappe._dict, ctx: content.RenderContext, store: ContentStore) -> bool:
	"""Write the row's document again, or finish removing the file (or Plan folder) it no longer has."""
	if row.reference_doctype and frappe.db.exists(row.reference_doctype, row.reference_name):
		doc = frappe.get_doc(row.reference_doctype, row.reference_name)
		return content.write_document(doc, ctx, store) is not content.Outcome.FAILED
	is_folder = paths.resolve(store.root, row.path).is_dir()
	# A folder whose document was created again under the same name belongs to it now: keep it.
	if not (is_folder and _folder_owned(row.path, ctx)):
		try:
			store.remove_tree(row.path) if is_folder else store.remove(row.path)
		except FileOperationError as e:
			content_files.record_failure(row.path, None, None, e)
			return False
		content_files.record_removal(row.path, is_folder)
	if is_folder:  # the row only carried the retry: a folder is no content file
		frappe.db.delete(content_files.DOCTYPE, {"name": row.name})
	return True


def _folder_owned(path: str, ctx: content.RenderContext) -> bool:
	name = path.rpartition("/")[2]
	return any(
		content.folder_of(content_type, name) == path and frappe.db.exists(content_type.doctype, name)
		for content_type in ctx.content_map.values()
	)


def drain_cdn() -> dict[str, int]:
	"""Queued (`jobs.request_drain`): send everything due to the CDN, children first, then end."""
	return cdn_sync.drain()


def probe_cdn() -> str | None:
	"""Every scheduler tick: probe the CDN through its base URL once the probe interval has passed."""
	return failover.tick()


def dispatch_cdn_sync() -> int:
	"""Every minute: queue the CDN work that is due, and alert on rows that exhausted their retries."""
	return cdn_sync.dispatch()


def enqueue_verify_cdn() -> None:
	"""Nightly (cron): queue the verification on the long queue; a run still in progress is not doubled."""
	_enqueue_long_once("verify_cdn", "verify-cdn")


def verify_cdn() -> str | None:
	"""Compare the bucket with the local files into a Content Health Report; also `bench execute`-able."""
	if not cdn_sync.get_bucket():
		return None
	return cdn_sync.verify_bucket().name


def check_disk_space() -> str | None:
	"""Every minute: one alert to System Managers when free disk falls below the minimum, one when it is back."""
	return disk_guard.check()


def hourly_health_check() -> None:
	"""Every hour (cron): queue an incremental health scan when the hour is within CDN Settings' hours."""
	if health.in_business_hours():
		health.enqueue(scope="Hourly")


def nightly_health_check() -> None:
	"""Nightly (cron): queue the full health scan on the long queue; never beside another scan."""
	health.enqueue(full=True, scope="Full")


def run_health_check(full: bool = False, scope: str | None = None) -> str:
	"""Scan the content files into a Content Health Report and return its name. By hand:

	bench --site SITE execute memora_storage.tasks.run_health_check [--kwargs "{'full': True}"]
	"""
	scope = scope or "Manual"
	try:
		return health.run(full=full, scope=scope).name
	except Exception as e:
		frappe.db.rollback()
		frappe.log_error(title=_("Memora Storage: {0} health scan failed").format(_(scope)))
		health.save_failure(scope, e)
		frappe.db.commit()
		raise
