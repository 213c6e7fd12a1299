"""Content File rows: one per content path, recording the local file and what the CDN must receive.

Every write, failure and removal lands here, so nothing the disk or the CDN missed is forgotten
across restarts: a Pending local status is retried by the scheduler, and a Pending sync status is
what the CDN upload queue works from.
"""

import hashlib

import frappe
from frappe import _
from frappe.utils import now_datetime

from memora_storage.utils.store import FileOperationError, WriteResult

DOCTYPE = "Content File"


def row_name(path: str) -> str:
	"""A stable row name for a path: one live row per path, found without a query."""
	return hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def _get_or_new(path: str):
	name = row_name(path)
	if frappe.db.exists(DOCTYPE, name):
		return frappe.get_doc(DOCTYPE, name)
	return frappe.get_doc({"doctype": DOCTYPE, "path": path})


def _save(doc) -> None:
	doc.flags.ignore_permissions = True
	if doc.is_new():
		doc.insert()
	else:
		doc.save()


def _queue_sync(doc, operation: str) -> None:
	doc.update(
		{
			"sync_operation": operation,
			"sync_status": "Pending",
			"attempts": 0,
			"next_attempt_at": now_datetime(),
			"first_failure_at": None,
			"last_error": None,
		}
	)


def record_write(result: WriteResult, doctype: str | None, name: str | None) -> None:
	"""The file at `result.path` now holds these bytes; queue an upload unless the CDN has them already."""
	doc = _get_or_new(result.path)
	doc.update(
		{
			"reference_doctype": doctype,
			"reference_name": name,
			"local_status": "Written",
			"sha256": result.sha256,
			"size": result.size,
			"local_error": None,
		}
	)
	if result.changed or doc.is_new() or not doc.written_at:
		doc.written_at = now_datetime()
	already_there = doc.sync_status == "Synced" and doc.synced_sha256 == result.sha256
	if not already_there and not (doc.sync_operation == "Upload" and doc.sync_status == "Pending"):
		_queue_sync(doc, "Upload")
	_save(doc)


def record_failure(path: str, doctype: str | None, name: str | None, error: FileOperationError) -> None:
	"""Log a failed file operation once (FR-016) and mark the path Pending so it is retried."""
	doc = _get_or_new(path)
	first_failure = doc.local_status != "Pending"
	doc.update(
		{
			"reference_doctype": doctype or doc.reference_doctype,
			"reference_name": name or doc.reference_name,
			"local_status": "Pending",
			"local_error": str(error),
		}
	)
	_save(doc)
	if first_failure:
		frappe.log_error(
			title=_("Memora Storage: could not {0} {1}").format(error.operation, path)[:140],
			message=f"operation: {error.operation}\npath: {path}\nerrno: {error.errno}\n"
			f"document: {doctype} {name}\nerror: {error}\ncause: {error.cause!r}",
			reference_doctype=doctype,
			reference_name=name,
		)


def record_removal(path: str, is_folder: bool, removed: bool) -> None:
	"""Mark the row(s) of a removed file or folder Deleted and queue the delete on the CDN."""
	if is_folder:
		names = frappe.get_all(DOCTYPE, filters={"path": ["like", f"{_escape_like(path)}/%"]}, pluck="name")
	else:
		names = [row_name(path)] if frappe.db.exists(DOCTYPE, row_name(path)) else []
	for name in names:
		doc = frappe.get_doc(DOCTYPE, name)
		doc.update({"local_status": "Deleted", "local_error": None, "sha256": None, "size": 0})
		_queue_sync(doc, "Delete")
		_save(doc)


def _escape_like(value: str) -> str:
	return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def pending_writes(limit: int = 500) -> list[frappe._dict]:
	"""Paths whose last write failed, oldest first, for the retry job."""
	return frappe.get_all(
		DOCTYPE,
		filters={"local_status": "Pending"},
		fields=["name", "path", "reference_doctype", "reference_name"],
		order_by="modified asc",
		limit=limit,
	)
