"""Scheduled and queued jobs: CDN sync and its dispatcher, re-linking, retrying failed writes."""

import frappe

from memora_storage import cdn_sync, content, content_files, settings
from memora_storage.utils.store import FileOperationError


def enqueue_relink() -> None:
	"""Queue one re-render of all content after the current transaction commits (deduplicated)."""
	frappe.enqueue(
		"memora_storage.tasks.relink_all",
		queue="long",
		job_id=f"memora_storage:relink:{frappe.local.site}",
		deduplicate=True,
		enqueue_after_commit=True,
	)


def relink_all() -> dict[str, int]:
	"""Re-render every content file so the links inside follow the current URL base (DESIGN.md)."""
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
		if row.reference_doctype and frappe.db.exists(row.reference_doctype, row.reference_name):
			written += content.write_document(
				frappe.get_doc(row.reference_doctype, row.reference_name), ctx, store
			)
		else:  # the document is gone: finish removing its file
			try:
				store.remove(row.path)
			except FileOperationError as e:
				content_files.record_failure(row.path, None, None, e)
				continue
			content_files.record_removal(row.path, is_folder=False)
			written += 1
	frappe.db.commit()
	return written


def sync_rows(names: list[str]) -> dict[str, int]:
	"""Queued: upload or delete these Content File rows on the CDN."""
	return cdn_sync.sync_rows(names)


def dispatch_cdn_sync() -> int:
	"""Every minute: queue the CDN work that is due, and alert on rows that exhausted their retries."""
	return cdn_sync.dispatch()


def enqueue_verify_cdn() -> None:
	"""Nightly (cron): queue the verification on the long queue; a run still in progress is not doubled."""
	frappe.enqueue(
		"memora_storage.tasks.verify_cdn",
		queue="long",
		job_id=f"memora_storage:verify-cdn:{frappe.local.site}",
		deduplicate=True,
	)


def verify_cdn() -> str | None:
	"""Compare the bucket with the local files into a Content Health Report; also `bench execute`-able."""
	if not cdn_sync.get_bucket():
		return None
	return cdn_sync.verify_bucket().name
