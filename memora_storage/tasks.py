"""Scheduled and queued jobs: re-linking after a settings change, and retrying failed writes."""

import frappe

from memora_storage import content, content_files, settings


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
	"""Every minute: write again what a full disk or a permission error kept from disk; returns files written."""
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
		else:
			content_files.record_removal(row.path, is_folder=False, removed=False)
	frappe.db.commit()
	return written
