"""Content File rows: one per content path, recording the local file and what the CDN must receive.

Every write, failure and removal lands here, so nothing the disk or the CDN missed is forgotten
across restarts: a Pending local status is retried by the scheduler, and a Pending sync status is
what the CDN upload queue works from. Rows are read FOR UPDATE and written with direct updates,
so a save and a sync job that touch the same row at once serialise instead of failing. Each change
of a row's version is mirrored in the delivery hash (`delivery.py`) that the resolver reads.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import frappe
from frappe import _
from frappe.utils import now_datetime

from memora_storage import delivery, jobs
from memora_storage.utils.store import FileOperationError, WriteResult

DOCTYPE = "Content File"
_FIELDS = (
	"name",
	"reference_doctype",
	"reference_name",
	"local_status",
	"sha256",
	"sync_operation",
	"sync_status",
	"synced_sha256",
	"written_at",
	"parent_path",
)


def row_name(path: str) -> str:
	"""A stable row name for a path: one live row per path, found without a query."""
	return hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def _locked_row(path: str) -> frappe._dict | None:
	return frappe.db.get_value(DOCTYPE, row_name(path), _FIELDS, as_dict=True, for_update=True)


def _upsert(path: str, row: frappe._dict | None, values: dict) -> None:
	if row:
		frappe.db.set_value(DOCTYPE, row.name, values)
		return
	try:
		frappe.get_doc({"doctype": DOCTYPE, "path": path, **values}).insert(ignore_permissions=True)
	except frappe.DuplicateEntryError:  # another process inserted it first
		frappe.db.set_value(DOCTYPE, row_name(path), values)


def sync_values(operation: str, row: frappe._dict | None) -> dict:
	"""Queue `operation` for the CDN; a row being synced right now only learns the new operation,
	and the running job, which compares what it sent with the row when it ends, queues it again."""
	if row and row.sync_status == "Syncing":
		return {"sync_operation": operation}
	return {
		"sync_operation": operation,
		"sync_status": "Pending",
		"attempts": 0,
		"next_attempt_at": now_datetime(),
		"first_failure_at": None,
		"last_error": None,
		"failure_alerted": 0,
	}


def _was_on_cdn(row: frappe._dict | None) -> bool:
	return (
		bool(row)
		and delivery.row_state(row.sync_status, row.sha256, row.synced_sha256, row.local_status)[0]
		== delivery.ON_CDN
	)


def record_write(
	result: WriteResult, doctype: str | None, name: str | None, parent_path: str | None = None
) -> bool:
	"""The file at `result.path` now holds these bytes; queue an upload unless the CDN has them already.

	Returns True when the path just left the CDN (its new version is local only): the files that
	list it must then be rendered again so their links follow it.
	"""
	row = _locked_row(result.path)
	values = {
		"reference_doctype": doctype,
		"reference_name": name,
		"local_status": "Written",
		"sha256": result.sha256,
		"size": result.size,
		"local_error": None,
		"parent_path": parent_path,
	}
	if result.changed or not row or not row.written_at:
		values["written_at"] = now_datetime()
	on_cdn = bool(row) and row.sync_status == "Synced" and row.synced_sha256 == result.sha256
	# The same version already waiting (or retrying, or Failed) keeps its schedule: a render that
	# changed nothing must not reset the backoff of an upload the CDN keeps refusing.
	queued = (
		bool(row)
		and row.sync_operation == "Upload"
		and row.sync_status in ("Pending", "Syncing", "Failed")
		and row.sha256 == result.sha256
	)
	if not on_cdn and not queued:
		values.update(sync_values("Upload", row))
	_upsert(result.path, row, values)
	delivery.mark({result.path: delivery.state(on_cdn, result.sha256)})
	if not on_cdn:
		request_drain_after_commit()
	return _was_on_cdn(row) and not on_cdn


def queue_upload(result: WriteResult) -> str:
	"""Queue an upload even where the row says the CDN has it (a verification found otherwise)."""
	row = _locked_row(result.path)
	values = {"sha256": result.sha256, "size": result.size, **sync_values("Upload", row)}
	if not row:
		values.update(local_status="Written", written_at=now_datetime())
	_upsert(result.path, row, values)
	delivery.mark_local(result.path, result.sha256)
	request_drain_after_commit()
	return row_name(result.path)


def record_failure(path: str, doctype: str | None, name: str | None, error: FileOperationError) -> None:
	"""Log a failed file operation once (FR-016) and mark the path Pending so it is retried."""
	row = _locked_row(path)
	# A removal knows only the path: the row tells which (deleted) document the file belonged to.
	doctype = doctype or (row and row.reference_doctype) or None
	name = name or (row and row.reference_name) or None
	_upsert(
		path,
		row,
		{
			"reference_doctype": doctype,
			"reference_name": name,
			"local_status": "Pending",
			"local_error": str(error),
		},
	)
	if not row:
		delivery.mark_local(path)
	if not row or row.local_status != "Pending":
		frappe.log_error(
			title=_("Memora Storage: could not {0} {1}").format(error.operation, path)[:140],
			message=f"operation: {error.operation}\npath: {path}\nerrno: {error.errno}\n"
			f"document: {doctype} {name}\nerror: {error}\ncause: {error.cause!r}",
			reference_doctype=doctype,
			reference_name=name,
		)


def record_render_failure(path: str, doctype: str, name: str, error: Exception) -> None:
	"""A document whose serialiser failed: its row is Failed (a code fix, then Rebuild, is needed), logged once."""
	row = _locked_row(path)
	_upsert(
		path,
		row,
		{
			"reference_doctype": doctype,
			"reference_name": name,
			"local_status": "Failed",
			"local_error": str(error)[:1000],
		},
	)
	if not row or row.local_status != "Failed":
		frappe.log_error(
			title=_("Memora Storage: could not render {0}").format(path)[:140],
			reference_doctype=doctype,
			reference_name=name,
		)


def record_removal(path: str, is_folder: bool) -> None:
	"""Mark the row(s) of a removed file or folder Deleted and queue the delete on the CDN."""
	if is_folder:
		names = frappe.get_all(DOCTYPE, filters={"path": ["like", f"{_escape_like(path)}/%"]}, pluck="path")
	else:
		names = [path]
	for file_path in names:
		row = _locked_row(file_path)
		if not row or (row.local_status == "Deleted" and row.sync_operation == "Delete"):
			continue
		values = {"local_status": "Deleted", "local_error": None, "sha256": None, "size": 0}
		values.update(sync_values("Delete", row))
		_upsert(file_path, row, values)
		delivery.mark_local(file_path)
		request_drain_after_commit()


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


@contextmanager
def drain_running() -> Iterator[None]:
	"""Inside the drain: what it writes, its own next pass sends, so no other drain is asked for."""
	frappe.flags.memora_drain_requested = True
	try:
		yield
	finally:
		frappe.flags.memora_drain_requested = False


def request_drain_after_commit() -> None:
	"""Ask for the CDN drain once the rows this transaction wrote are visible to it (once per transaction)."""
	if frappe.flags.memora_drain_requested:
		return
	frappe.flags.memora_drain_requested = True
	frappe.db.after_commit.add(_request_drain)
	frappe.db.after_rollback.add(_forget_request)


def _request_drain() -> None:
	_forget_request()
	jobs.request_drain()


def _forget_request() -> None:
	frappe.flags.memora_drain_requested = False
