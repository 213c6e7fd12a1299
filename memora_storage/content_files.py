"""Content File rows: every state a content path can be in, and every transition between them.

One row per content path records the local file and what the CDN must receive. Nothing else in the
app writes these rows, and every change of a path's version is mirrored in the delivery hash
(`delivery_hash.py`) in the same call, so the URL decision and the record never disagree for long.

Local status (the file on this server):
	(none) ──record_write──▶ Written ◀──record_write── Pending, Failed, Deleted
	any ──record_failure──▶ Pending   (a write or removal the disk refused; retried every minute)
	any ──record_render_failure──▶ Failed   (a serialiser's bug; a code fix and a rebuild are needed)
	Written, Pending ──record_removal──▶ Deleted   (and the CDN delete is queued)

Sync status (what the CDN holds), with the operation (Upload or Delete) it is about:
	Pending, Synced, Failed ──queue──▶ Pending (a fresh schedule; Syncing only learns the operation)
	Pending (due) ──claim──▶ Syncing (a claim token, a lease of LEASE_SECONDS)
	Syncing ──renew──▶ Syncing   (the live drain extends its lease, every RENEW_SECONDS while it sends)
	Syncing ──release──▶ Pending   (the pass that claimed it died)
	Syncing ──free_stuck──▶ Pending   (its lease ran out: the worker died; the token stays, to say the
		dead drain may have stored it, and the next upload looks for it by hash first)
	Syncing ──mark_synced──▶ Synced   (the upload of the current version landed)
	Syncing ──repair──▶ Synced   (what was sent is what the file holds: the row's version was stale)
	Syncing ──mark_deleted──▶ (row removed)   (the CDN delete landed)
	Syncing ──requeue──▶ Pending   (the row changed while it was sent: the new version goes next)
	Syncing ──record_error──▶ Pending (backoff) or Failed (retries exhausted)
	Pending ──resume_waiting──▶ Pending   (a fresh schedule once the CDN is back: waiting was not failing)
	Synced, Pending ──record_relinked──▶ Synced or Pending   (links rewritten: Synced only at the
		version the CDN holds)
	Failed ──mark_alerted──▶ Failed   (System Managers told once)
Refused: a claim of a row that is not due, or that another transaction holds; a finish of a row
whose claim token changed (freed and claimed anew); a relink of a row whose version changed since
it was read or that is being sent.

Rows are read FOR UPDATE (SKIP LOCKED in the drain) and written with direct updates, so a save and
a drain that touch the same row at once serialise instead of failing, and the drain never waits.
"""

import datetime
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from memora_storage import after_commit, delivery_hash, jobs, settings
from memora_storage.utils import backoff
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
CLAIM_FIELDS = ["name", "path", "parent_path", "sync_operation", "sha256", "synced_sha256", "sync_claim"]
# A claim is a lease: `modified` is when it was taken or last renewed. The live drain renews it every
# RENEW_SECONDS while it sends; a row not renewed for LEASE_SECONDS lost its worker (a SIGKILL, a
# host gone), and the next drain or the per-minute dispatcher takes it back: within two minutes.
LEASE_SECONDS = 45
RENEW_SECONDS = 10
FINISH_WAIT_S = 30.0  # how long a finish waits for saves holding claimed rows before leaving them
DRAIN_REQUEST = "drain"  # the after-commit key of a drain request


def row_name(path: str) -> str:
	"""A stable row name for a path: one live row per path, found without a query."""
	return hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def is_on_cdn(
	sync_status: str | None, sha256: str | None, synced_sha256: str | None, local_status: str | None
) -> bool:
	"""Whether the CDN holds a row's current version: synced at exactly that version."""
	return local_status == "Written" and sync_status == "Synced" and bool(sha256) and sha256 == synced_sha256


def delivery_state(row: frappe._dict) -> str:
	"""The delivery hash's value for a row."""
	return delivery_hash.state(
		is_on_cdn(row.sync_status, row.sha256, row.synced_sha256, row.local_status), row.sha256
	)


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


def _queued(operation: str, row: frappe._dict | None) -> dict:
	"""The values of `queue`: a row being synced right now only learns the new operation, and the
	running drain, which compares what it sent with the row when it finishes, queues it again."""
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


# Local transitions -------------------------------------------------------------------------------


def record_write(
	result: WriteResult, doctype: str | None, name: str | None, parent_path: str | None = None
) -> bool:
	"""The file at `result.path` now holds these bytes; queue an upload unless the CDN has them already.

	Returns True when the path just left the CDN (its new version is local only): the files that
	list it must then be rendered again so their links follow it.
	"""
	return bool(record_writes([(result, doctype, name, parent_path)]))


Written = tuple[WriteResult, str | None, str | None, str | None]  # result, doctype, name, parent path


def record_writes(written: list[Written]) -> set[str]:
	"""`record_write` for the files of one batch: their rows read in one locking query, new rows
	inserted in one statement, and the delivery hash marked in one call. Returns the paths that
	just left the CDN."""
	if not written:
		return set()
	rows = _locked_rows([result.path for result, *_ in written])
	now = now_datetime()
	states, left, new_rows, updates, queued_any = {}, set(), {}, {}, False
	for result, doctype, name, parent_path in written:
		row = rows.get(row_name(result.path))
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
			values["written_at"] = now
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
			values.update(_queued("Upload", row))
		if row:
			updates[row.name] = values
		else:
			new_rows[result.path] = values
		states[result.path] = delivery_hash.state(on_cdn, result.sha256)
		queued_any |= not on_cdn
		if row and is_on_cdn(row.sync_status, row.sha256, row.synced_sha256, row.local_status) and not on_cdn:
			left.add(result.path)
	_update_many(updates, now)
	_insert(new_rows, now)
	delivery_hash.mark(states)
	if queued_any:
		request_drain_after_commit()
	return left


def _locked_rows(paths: list[str]) -> dict[str, frappe._dict]:
	"""The rows of these paths by name, read FOR UPDATE in one query, in primary-key order (plain SQL:
	the query builder's field checks cost more than the query on the save path)."""
	rows = frappe.db.sql(
		f"select {', '.join(f'`{field}`' for field in _FIELDS)} from `tabContent File`"
		" where name in %(names)s order by name for update",
		{"names": [row_name(path) for path in paths]},
		as_dict=True,
	)
	return {row.name: row for row in rows}


def _update_many(updates: dict[str, dict], now: datetime.datetime) -> None:
	"""Rows set to their values, one statement per set of fields (plain SQL, as `frappe.db.set_value`
	without its document-cache clearing: no Content File is read from the cache). An edit of ten
	Units in one commit costs one statement, not ten."""
	groups: dict[tuple[str, ...], list[str]] = {}
	for name, values in updates.items():
		groups.setdefault(tuple(values), []).append(name)
	user = frappe.session.user
	for fields, names in groups.items():
		cases, params = [], []
		for field in fields:
			cases.append(f"`{field}` = case `name`{' when %s then %s' * len(names)} end")
			params += [value for name in names for value in (name, updates[name][field])]
		frappe.db.sql(
			f"update `tabContent File` set {', '.join(cases)}, `modified` = %s, `modified_by` = %s"
			f" where `name` in ({', '.join(['%s'] * len(names))})",
			[*params, now, user, *names],
		)


def _insert(new_rows: dict[str, dict], now: datetime.datetime) -> None:
	"""New rows in one statement (all carry the same fields: a new row is always queued); if another
	process inserted one of them first, each is upserted on its own instead."""
	if not new_rows:
		return
	fields = list(next(iter(new_rows.values())))
	own = ["name", "path", "owner", "modified_by", "creation", "modified", "docstatus", "idx"]
	user = frappe.session.user
	records = [
		(row_name(path), path, user, user, now, now, 0, 0, *(values[field] for field in fields))
		for path, values in new_rows.items()
	]
	columns = ", ".join(f"`{column}`" for column in [*own, *fields])
	placeholders = ", ".join(["(" + ", ".join(["%s"] * (len(own) + len(fields))) + ")"] * len(records))
	try:
		# Plain SQL: the query builder spends longer building a large insert than the database running it.
		frappe.db.sql(
			f"insert into `tabContent File` ({columns}) values {placeholders}",
			[value for record in records for value in record],
		)
	except Exception as e:
		if not frappe.db.is_duplicate_entry(e):
			raise
		for path, values in new_rows.items():
			_upsert(path, _locked_row(path), values)


def record_failure(path: str, doctype: str | None, name: str | None, error: FileOperationError) -> None:
	"""Log a failed file operation once and mark the path Pending so it is retried."""
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
		delivery_hash.mark_local(path)
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
		values.update(_queued("Delete", row))
		_upsert(file_path, row, values)
		delivery_hash.mark_local(file_path)
		request_drain_after_commit()


def drop_folder_row(name: str) -> None:
	"""A folder's row only carried a pending removal: once the folder is gone, so is the row."""
	frappe.db.delete(DOCTYPE, {"name": name})


def _escape_like(value: str) -> str:
	return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Sync transitions: queueing ----------------------------------------------------------------------


def queue_upload(result: WriteResult) -> str:
	"""Queue an upload even where the row says the CDN has it (a verification found otherwise)."""
	row = _locked_row(result.path)
	values = {"sha256": result.sha256, "size": result.size, **_queued("Upload", row)}
	if not row:
		values.update(local_status="Written", written_at=now_datetime())
	_upsert(result.path, row, values)
	delivery_hash.mark_local(result.path, result.sha256)
	request_drain_after_commit()
	return row_name(result.path)


def retry(names: Iterable[str]) -> int:
	"""Start a fresh schedule for these rows (an administrator's retry); the count of rows found."""
	names = [name for name in names if frappe.db.exists(DOCTYPE, name)]
	for name in names:
		operation = frappe.db.get_value(DOCTYPE, name, "sync_operation", for_update=True) or "Upload"
		frappe.db.set_value(DOCTYPE, name, {**_queued(operation, None), "sync_claim": None})
	if names:
		request_drain_after_commit()
	return len(names)


def resume_waiting(now: datetime.datetime) -> None:
	"""The CDN is back: what waited for it is due now, with a fresh schedule (waiting was not failing)."""
	frappe.db.sql(
		"""update `tabContent File` set attempts=0, first_failure_at=null, next_attempt_at=%s
		where sync_status='Pending'""",
		now,
	)


def request_drain_after_commit() -> None:
	"""Ask for the CDN drain once the rows this transaction wrote are visible to it (once per transaction)."""
	after_commit.once(DRAIN_REQUEST, jobs.request_drain)


def drain_running():
	"""Inside the drain: what it writes, its own next pass sends, so no other drain is asked for."""
	return after_commit.suppressed(DRAIN_REQUEST)


# Sync transitions: the drain ---------------------------------------------------------------------


def due(now: datetime.datetime, limit: int, deletes: set[str] | None = None) -> list[frappe._dict]:
	"""Pending rows whose next attempt is due, oldest first; with `deletes`, of the deletes only those
	of these paths (the others held by the deletion brake)."""
	filters = {"sync_status": "Pending", "next_attempt_at": ["<=", now]}
	or_filters = None
	if deletes is not None:
		if deletes:
			or_filters = {"sync_operation": "Upload", "path": ["in", sorted(deletes)]}
		else:
			filters["sync_operation"] = "Upload"
	return frappe.get_all(
		DOCTYPE,
		filters=filters,
		or_filters=or_filters,
		fields=CLAIM_FIELDS,
		order_by="next_attempt_at asc",
		limit=limit,
	)


def count_due(now: datetime.datetime) -> int:
	return frappe.db.count(DOCTYPE, {"sync_status": "Pending", "next_attempt_at": ["<=", now]})


def pending_deletes() -> list[str]:
	"""The paths whose delete on the CDN is due or waiting (the deletion brake counts them)."""
	return frappe.get_all(
		DOCTYPE, filters={"sync_status": "Pending", "sync_operation": "Delete"}, pluck="path"
	)


def count_waiting() -> int:
	"""Rows due for the CDN, whether or not their time has come."""
	return frappe.db.count(DOCTYPE, {"sync_status": "Pending"})


def in_flight(paths: Iterable[str]) -> set[str]:
	"""The paths among these whose CDN work is not done yet (Pending or Syncing)."""
	if not (paths := list(paths)):
		return set()
	return set(
		frappe.get_all(
			DOCTYPE,
			filters={
				"name": ["in", [row_name(path) for path in paths]],
				"sync_status": ["in", ["Pending", "Syncing"]],
			},
			pluck="path",
		)
	)


def listing_due_children(parents: set[str], due_at: datetime.datetime) -> set[str]:
	"""The files among `parents` that list children whose uploads are still due or being sent."""
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


def listing(paths: list[str]) -> set[str]:
	"""The paths among these that list other files."""
	if not paths:
		return set()
	return set(
		frappe.get_all(DOCTYPE, filters={"parent_path": ["in", paths]}, pluck="parent_path", distinct=True)
	)


def claim(rows: list[frappe._dict], now: datetime.datetime) -> list[frappe._dict]:
	"""Pending → Syncing for the rows still due that no transaction holds, under one new token; committed."""
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
		DOCTYPE, filters={"sync_claim": token, "sync_status": "Syncing"}, fields=CLAIM_FIELDS
	)


def release(token: str) -> None:
	"""Syncing → Pending for a claim whose pass died; what that pass wrote is rolled back first."""
	frappe.db.rollback()
	frappe.db.sql(
		"update `tabContent File` set sync_status='Pending', sync_claim=null where sync_claim=%s and sync_status='Syncing'",
		token,
	)
	frappe.db.commit()


def renew(token: str) -> None:
	"""Syncing → Syncing: extend the lease of the live drain's claim; committed. Rows a save holds
	are skipped (SKIP LOCKED, the drain never waits): the save's commit touches them anyway."""
	names = frappe.db.sql(
		"""select name from `tabContent File` where sync_claim=%s and sync_status='Syncing'
		for update skip locked""",
		token,
		pluck=True,
	)
	if names:
		frappe.db.sql(
			"update `tabContent File` set modified=%(now)s where name in %(names)s",
			{"now": now_datetime(), "names": tuple(names)},
		)
	frappe.db.commit()


def free_stuck() -> None:
	"""Syncing → Pending for leases that ran out (their drain died), still due as when claimed, attempts
	unchanged: a crash is no failed attempt. The dead claim's token is kept as a mark (`may_be_stored`)."""
	frappe.db.sql(
		"""update `tabContent File` set sync_status='Pending'
		where sync_status='Syncing' and modified < %s""",
		add_to_date(now_datetime(), seconds=-LEASE_SECONDS),
	)


def may_be_stored(rows: list[frappe._dict]) -> set[str]:
	"""The paths among due rows whose last claim expired: a dead drain may have stored them already."""
	return {row.path for row in rows if row.sync_claim}


def finish(
	rows: list[frappe._dict],
	results: dict[str, tuple[str | None, Exception | None]],
	now: datetime.datetime,
	holds: Callable[[str, str | None], bool],
) -> tuple[dict[str, str], dict[str, str]]:
	"""Record each claimed row's outcome in a few statements, committed: `mark_synced`, `repair`,
	`mark_deleted`, `requeue` or `record_error`. `results` maps each path to (SHA-256 sent, error);
	`holds(path, sha256)` says whether the local file holds that version now.

	Rows are taken with SKIP LOCKED, as in `claim`: one a save holds is finished once it commits.
	Returns each row's outcome (synced, requeued, retry, failed) and the rows repaired (path → the
	SHA-256 they had recorded).
	"""
	outcomes: dict[str, str] = {}
	repaired: dict[str, str] = {}
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
		_record_outcomes(pairs, results, now, holds, outcomes, repaired)
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
	return outcomes, repaired


def _record_outcomes(
	pairs: list[tuple[frappe._dict, frappe._dict]],
	results: dict[str, tuple[str | None, Exception | None]],
	now: datetime.datetime,
	holds: Callable[[str, str | None], bool],
	outcomes: dict[str, str],
	repaired: dict[str, str],
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
			if holds(row.path, sent):
				# What we sent is what the file holds now: the row's version was stale (a write whose
				# record was lost, or two renders recorded out of order). Sending it again would loop.
				_repair(row.name, sent)
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
	_mark_synced(synced)
	_mark_deleted(deleted)
	for operation, names in requeued.items():
		_requeue(names, operation)


_SYNCED = {
	"sync_status": "Synced",
	"attempts": 0,
	"next_attempt_at": None,
	"first_failure_at": None,
	"last_error": None,
	"sync_claim": None,
}


def _mark_synced(names: list[str]) -> None:
	if names:
		frappe.db.sql(
			"""update `tabContent File` set sync_status='Synced', synced_sha256=sha256, last_synced_at=%(now)s,
			attempts=0, next_attempt_at=null, first_failure_at=null, last_error=null, sync_claim=null
			where name in %(names)s""",
			{"names": tuple(names), "now": now_datetime()},
		)


def _repair(name: str, sent: str | None) -> None:
	frappe.db.set_value(
		DOCTYPE, name, {"sha256": sent, "synced_sha256": sent, "last_synced_at": now_datetime(), **_SYNCED}
	)


def _mark_deleted(names: list[str]) -> None:
	if names:
		frappe.db.delete(DOCTYPE, {"name": ["in", names]})


def _requeue(names: list[str], operation: str) -> None:
	frappe.db.set_value(
		DOCTYPE,
		{"name": ["in", names]},
		{**_queued(operation, None), "sync_claim": None},
		update_modified=False,
	)


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


def failed_unalerted() -> list[frappe._dict]:
	"""Failed rows whose System Managers were not told yet."""
	return frappe.get_all(
		DOCTYPE,
		filters={"sync_status": "Failed", "failure_alerted": 0},
		fields=["name", "path", "sync_operation", "last_error"],
		order_by="path asc",
	)


def mark_alerted(names: list[str]) -> None:
	frappe.db.set_value(DOCTYPE, {"name": ["in", names]}, "failure_alerted", 1)


def failed_names() -> list[str]:
	return frappe.get_all(DOCTYPE, filters={"sync_status": "Failed"}, pluck="name")


# Sync transitions: the relink --------------------------------------------------------------------


def relinkable() -> list[frappe._dict]:
	"""Every written file's row, for a relink: its path, the file listing it and its versions."""
	return frappe.db.sql(
		"""select name, path, parent_path, sha256, synced_sha256 from `tabContent File`
		where local_status = 'Written'""",
		as_dict=True,
	)


# Assignments run left to right and see the values set before them: the schedule is decided from the
# row's status as it was, then the status from the version the file now holds. A row being sent
# (Syncing) keeps its claim: the drain finds the new version and queues it again.
_RELINKED = """update `tabContent File` set
	next_attempt_at = case when sync_status = 'Synced' and ifnull(synced_sha256, '') != %(sha256)s
		then %(now)s when sync_status != 'Syncing' and synced_sha256 = %(sha256)s then null
		else next_attempt_at end,
	attempts = case when sync_status != 'Syncing' and synced_sha256 = %(sha256)s then 0 else attempts end,
	last_error = case when sync_status != 'Syncing' and synced_sha256 = %(sha256)s then null else last_error end,
	sync_status = case when sync_status = 'Syncing' then sync_status
		when synced_sha256 = %(sha256)s then 'Synced'
		when sync_status = 'Synced' then 'Pending' else sync_status end,
	sha256 = %(sha256)s, size = %(size)s, modified = %(now)s
	where name = %(name)s and sha256 = %(old)s and local_status = 'Written'"""


def record_relinked(updates: list[dict]) -> None:
	"""Files whose links a relink rewrote: each {name, old, sha256, size, now}. Synced again where the
	new bytes are the version the CDN holds, Pending where a Synced file now differs from it; a row
	whose version changed since the relink read it is left alone."""
	for values in updates:
		frappe.db.sql(_RELINKED, values)


# Reads -------------------------------------------------------------------------------------------


def pending_writes(limit: int = 500) -> list[frappe._dict]:
	"""Paths whose last write failed, oldest first, for the retry job."""
	return frappe.get_all(
		DOCTYPE,
		filters={"local_status": "Pending"},
		fields=["name", "path", "reference_doctype", "reference_name"],
		order_by="modified asc",
		limit=limit,
	)


def count_pending_writes() -> int:
	return frappe.db.count(DOCTYPE, {"local_status": "Pending"})


def pending_write_errors() -> dict[str, str]:
	"""Path → the error of each write waiting for a retry."""
	rows = frappe.get_all(DOCTYPE, filters={"local_status": "Pending"}, fields=["path", "local_error"])
	return {row.path: row.local_error or "" for row in rows}


def local_error(path: str) -> str:
	return frappe.db.get_value(DOCTYPE, row_name(path), "local_error") or ""


def exists(path: str) -> bool:
	return bool(frappe.db.exists(DOCTYPE, row_name(path)))


def changed_since(since: datetime.datetime) -> list[str]:
	"""Paths written, failed or removed since `since`, and every path still waiting to be written."""
	return frappe.get_all(
		DOCTYPE, or_filters={"modified": [">=", since], "local_status": "Pending"}, pluck="path"
	)


def references(path: str) -> frappe._dict:
	"""The document a path's file belongs to, and the file listing it (empty when there is no row)."""
	return (
		frappe.db.get_value(
			DOCTYPE, row_name(path), ["reference_doctype", "reference_name", "parent_path"], as_dict=True
		)
		or frappe._dict()
	)


def written_references(paths: Iterable[str]) -> list[tuple[str, str]]:
	"""The (DocType, name) of each written file among these paths."""
	names = [row_name(path) for path in dict.fromkeys(paths)]
	if not names:
		return []
	rows = frappe.get_all(
		DOCTYPE,
		filters={"name": ["in", names], "local_status": "Written"},
		fields=["reference_doctype", "reference_name"],
	)
	return [(row.reference_doctype, row.reference_name) for row in rows if row.reference_doctype]


def without_parent_path(doctypes: list[str]) -> list[frappe._dict]:
	"""Rows of these DocTypes written before `parent_path` existed (a patch fills it in)."""
	return frappe.get_all(
		DOCTYPE,
		filters={"parent_path": ["is", "not set"], "reference_doctype": ["in", doctypes]},
		fields=["name", "reference_doctype", "reference_name"],
	)


def set_parent_path(name: str, parent_path: str) -> None:
	frappe.db.set_value(DOCTYPE, name, "parent_path", parent_path, update_modified=False)


# The delivery hash, from the rows ----------------------------------------------------------------


def delivery_states(paths: list[str]) -> list[delivery_hash.Delivery | None]:
	"""Each path's delivery read from the rows (None: no row), while Redis has lost the hash; a
	rebuild of the hash is asked for."""
	jobs.request(jobs.DELIVERY_HASH)
	names = {row_name(path): path for path in paths}
	rows = frappe.get_all(
		DOCTYPE,
		filters={"name": ["in", list(names)]},
		fields=["path", "sync_status", "sha256", "synced_sha256", "local_status"],
	)
	found = {row.path: delivery_state(row) for row in rows}
	return [delivery_hash.delivery_of(found[path].encode()) if path in found else None for path in paths]


def rebuild_delivery_hash() -> int:
	"""Fill the delivery hash from every row; a field written meanwhile (a newer mark) is kept."""
	jobs.started(jobs.DELIVERY_HASH)
	rows = frappe.db.sql(
		"select path, sync_status, sha256, synced_sha256, local_status from `tabContent File`", as_dict=True
	)
	delivery_hash.fill(
		((row.path, delivery_state(row)) for row in rows),
		settings.saved_values(),
		settings.stored_verdict(),
	)
	return len(rows)


def ensure_delivery_hash() -> None:
	"""Build the delivery hash now if it is missing (install, migrate)."""
	if not delivery_hash.is_ready():
		rebuild_delivery_hash()
