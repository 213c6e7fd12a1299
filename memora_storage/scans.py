"""Content scans: missing, orphaned, stale and invalid files, found by the scan core fed with the records
of every content DocType, into a Content Health Report.

What each scope judges, and how it decides that a file is stale:
- Full (nightly, or `run_health_check(full=True)`): every record and every file under the content root,
  each file judged by its metadata: missing, not a regular file, empty, or older than its record. It
  costs about what listing the names does (within twice `find | sort` plus one query at 100,000 files).
- Deep (the Sunday night scan, or `run_health_check(deep=True)`): the full scan, and each file is read
  and compared byte for byte with a fresh render of its document, so a file cut short or edited by
  hand, a stale link (a URL base change whose re-link did not finish) or a parent that misses a child
  are found too. Rendering costs about 0.7 ms per Unit, so about 100 s per 100,000 records: once a week
  on the long queue. Its report says so (Contents Checked).
- Hourly (business hours) and Manual: the records modified since the last scan, the paths of Content
  File rows changed since then (deletes included, so a file a delete left behind is found), every path
  waiting to be written, and a random sample of the rest; staleness is mtime against the record's
  `modified` (the default serialiser writes `modified` into the file, so every save changes the bytes).
  The first scan of a site judges everything by mtime.

Files are never deleted by a scan: orphans are listed, and `delete_orphans` removes them on request.
"""

import datetime
import os
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import frappe
from frappe import _
from frappe.utils import get_datetime, get_system_timezone, now_datetime

from memora_storage import content_files, jobs, json_rows, progress, publishing, reports, settings
from memora_storage.content_map import ContentType, path_of
from memora_storage.utils import disk, paths
from memora_storage.utils.scan import ExpectedFile, NaiveTimes, full_scan, incremental_scan
from memora_storage.utils.store import ContentStore, FileOperationError

SCOPES = ("Hourly", "Full", "Manual")
RENDER_BATCH = 500  # records a deep scan loads and renders at once
DEEP_WEEKDAY = 6  # Sunday: that night's full scan also reads every file and renders every record
SAMPLE_SIZE = 200  # records judged at random by each incremental scan, besides the changed ones
FULL_SCAN_TIMEOUT = 4 * 3600  # seconds; rendering 100,000 records takes about 100 s
LOGGED_LIMIT = 200  # lines of one Error Log


def enqueue(full: bool = False, scope: str | None = None, deep: bool = False) -> bool:
	"""Queue a scan on the long queue; False when one is already queued or running (two scans of a
	site never run at once). A deep scan is a full one."""
	full = full or deep
	return jobs.enqueue_once(
		jobs.SCAN, timeout=FULL_SCAN_TIMEOUT if full else None, full=full, deep=deep, scope=scope
	)


def hourly() -> None:
	"""Every hour (cron): queue an incremental scan when the hour is within CDN Settings' hours."""
	if in_business_hours():
		enqueue(scope="Hourly")


def nightly() -> None:
	"""Nightly (cron): queue the full scan on the long queue, a deep one on Sundays; never beside
	another scan."""
	enqueue(full=True, deep=now_datetime().weekday() == DEEP_WEEKDAY, scope="Full")


def run(full: bool = False, scope: str | None = None, deep: bool = False) -> str:
	"""Scan the content files into a Content Health Report and return its name. By hand:

	bench --site SITE execute memora_storage.scans.run [--kwargs "{'full': True}"] (or 'deep')
	"""
	scope = scope or "Manual"
	try:
		return scan(full=full or deep, scope=scope, deep=deep).name
	except Exception as e:
		frappe.db.rollback()
		frappe.log_error(title=_("Memora Storage: {0} health scan failed").format(_(scope)))
		save_failure(scope, e)
		frappe.db.commit()
		raise


def in_business_hours(now: datetime.datetime | None = None) -> bool:
	"""Whether the hourly scan runs now: from the start hour through the end hour, site time zone."""
	doc = frappe.get_single("CDN Settings")  # the defaults, while the settings were never saved
	start, end = doc.health_check_start_hour, doc.health_check_end_hour
	hour = (now or now_datetime()).hour
	return start <= hour <= end if start <= end else hour >= start or hour <= end  # a window past midnight


def scan(full: bool = False, scope: str = "Manual", deep: bool = False) -> "frappe.Document":
	"""Scan, regenerate missing files if CDN Settings say so, and store a Content Health Report.

	A Manual scan was asked for by the session's user: they see its progress and are told when it ends.
	"""
	if scope not in SCOPES:
		frappe.throw(_("Unknown health scan scope: {0}").format(scope))
	with progress.Task(_("Health scan"), user=frappe.session.user if scope == "Manual" else None) as task:
		saved = _run(full or deep, deep, scope, task)
		task.report_done(saved)
	return saved


def _run(full: bool, deep: bool, scope: str, task: progress.Task) -> "frappe.Document":
	started = now_datetime()
	store = settings.content_store()
	record_tz = ZoneInfo(get_system_timezone())
	since = None if full else last_scan_start()
	ctx = publishing.new_context()
	expected = ExpectedRecords(
		ctx,
		record_tz,
		render=deep,
		# one step more than the records: regenerating and saving come after
		on_progress=task.counter(_("Records read: {0} of {1}"), steps_after=1),
	)
	if since is None:
		report = full_scan(store.root, expected, record_tz=record_tz, read_files=deep)
	else:
		report = incremental_scan(
			store.root,
			expected,
			since=since,
			paths=content_files.changed_since(since),
			sample=SAMPLE_SIZE,
			record_tz=record_tz,
		)
	# Stale temp files of killed writers; the public tree only where the walk saw backups or temp files
	# there (`.prev` files old workers wrote during an update, after the patch moved the rest).
	if full and (tidied := store.tidy(public=report.left_behind > 0)).errors:
		frappe.log_error(title="memora_storage: .prev files left in public", message="\n".join(tidied.errors))
	found = report.to_dict()  # paths made storable: a name that is not UTF-8 arrives as lone surrogates
	regenerated = {}
	if found["missing"] and frappe.get_single("CDN Settings").regenerate_missing_files:
		regenerated = regenerate(
			found["missing"],
			store,
			ctx,
			on_progress=task.counter(_("Missing files regenerated: {0} of {1}"), steps_after=1),
		)
	pending = content_files.pending_write_errors()  # after regenerating: a failed one is pending now
	problems = [
		*_problems("Missing", found["missing"], pending, regenerated),
		*(
			reports.Problem("Orphaned", path, detail=_("no record expects this file"))
			for path in found["orphaned"]
		),
		*_problems("Stale", found["stale"], pending),
		*_problems("Invalid", found["invalid"], pending),
		*_problems("Not Checked", found["errors"], pending),
		*(reports.Problem("Not Checked", p.path, p.doctype, p.name, p.reason) for p in expected.refused),
	]
	status = disk.disk_status(store.root)
	min_free = settings.get_settings()["min_free_disk_percent"]
	counts = found["counts"]
	regenerated_count = sum(failure is None for failure in regenerated.values())
	saved = reports.save_report(
		scope,
		problems,
		_summary(counts, regenerated_count, len(expected.refused)),
		checked_at=started,
		duration_seconds=(now_datetime() - started).total_seconds(),
		expected_count=counts["records"] + len(expected.refused),
		files_count=counts["files"],
		missing_count=counts["missing"],
		orphaned_count=counts["orphaned"],
		stale_count=counts["stale"],
		invalid_count=counts["invalid"],
		regenerated_count=regenerated_count,
		contents_checked=int(deep),
		disk_free_percent=status.free_percent,
		disk_status="Low" if status.is_low(min_free) else "Healthy",
	)
	_log(saved, found, pending)
	frappe.db.commit()
	return saved


def _summary(counts: dict, regenerated: int, refused: int) -> str:
	text = _(
		"{0} of {1} records checked, {2} files seen: {3} missing, {4} orphaned, {5} stale, {6} invalid"
	).format(
		counts["checked"],
		counts["records"],
		counts["files"],
		counts["missing"],
		counts["orphaned"],
		counts["stale"],
		counts["invalid"],
	)
	if counts["errors"] or refused:
		text += _(", {0} could not be checked").format(counts["errors"] + refused)
	if regenerated:
		text += _("; {0} missing files regenerated").format(regenerated)
	return text + "."


class ExpectedRecords:
	"""Every record of the content map as an ExpectedFile: paths from the rules, `modified` as stored.

	Rows are read in chunks from Frappe's index on `modified` (`json_rows.chunks`), so memory does not
	grow with the records, the documents themselves are not read, and no query is open while a chunk
	is judged. With renders, each RENDER_BATCH records are loaded in one query per DocType
	(`publishing.load_documents`) and rendered before they are judged. A record whose name cannot be
	a path (`path_of` refuses it) is listed in `refused` instead.
	`on_progress(read, total)` hears of every record read. `modified` is handed on as a timestamp,
	read in `record_tz` (System Settings' time zone) once per minute of text (`NaiveTimes`).
	"""

	def __init__(
		self,
		ctx: publishing.RenderContext,
		record_tz: datetime.tzinfo,
		render: bool,
		on_progress: Callable[[int, int], None] | None = None,
	):
		self.ctx = ctx
		self.render = render
		self.on_progress = on_progress
		self.refused: list[frappe._dict] = []
		self.times = NaiveTimes(record_tz)

	def __iter__(self) -> Iterator[ExpectedFile]:
		doctypes = [doctype for doctype in self.ctx.content_map if frappe.db.table_exists(doctype)]
		total = sum(frappe.db.count(doctype) for doctype in doctypes) if self.on_progress else 0
		read = 0
		for doctype in doctypes:
			content_type = self.ctx.content_map[doctype]
			fields = list(dict.fromkeys(["name", "modified", *content_type.path_fields]))
			for chunk in json_rows.chunks(doctype, fields):
				step = RENDER_BATCH if self.render else len(chunk)
				for start in range(0, len(chunk), step):
					rows = chunk[start : start + step]
					rendered = self._render(doctype, [row[0] for row in rows]) if self.render else {}
					for row in rows:
						values = dict(zip(fields, row, strict=True))
						if expected := self._expected(content_type, values, rendered):
							yield expected
				if self.on_progress:
					read += len(chunk)
					self.on_progress(read, total)

	def _render(self, doctype: str, names: list[str]) -> dict[str, bytes | Exception]:
		"""Each record's fresh render, or what its serialiser raised; none for a record gone meanwhile."""
		rendered: dict[str, bytes | Exception] = {}
		for doc in publishing.load_documents([(doctype, name) for name in names]):
			try:
				rendered[doc.name] = publishing.render(doc, self.ctx)
			except Exception as e:
				rendered[doc.name] = e
		return rendered

	def _expected(
		self, content_type: ContentType, values: dict, rendered: dict[str, bytes | Exception]
	) -> ExpectedFile | None:
		"""The record's file, or None: its name cannot be a path (refused), or it has none yet."""
		name = values["name"]
		try:
			path = path_of(content_type, values, remember=False)
		except paths.InvalidPathError as e:
			fields = {key: value or "" for key, value in values.items() if key not in ("name", "modified")}
			self.refused.append(
				frappe._dict(
					path=content_type.path.format(**fields, name=name),
					doctype=content_type.doctype,
					name=name,
					reason=_("it has no content path: {0}").format(e),
				)
			)
			return None
		if path is None:
			return None  # no place on disk until its parent is set
		modified = values["modified"]
		return ExpectedFile(
			path=path,
			modified=self.times(modified) if modified else None,
			content=_content(rendered.get(name, MissingRecord())) if self.render else None,
			reference_doctype=content_type.doctype,
			reference_name=name,
		)


class MissingRecord(Exception):
	def __str__(self) -> str:
		return "the record was deleted during the scan"


def _content(rendered: bytes | Exception) -> bytes | Callable[[], bytes]:
	"""The bytes the file should hold, or a renderer raising what the render raised (the scan names it)."""
	if isinstance(rendered, Exception):

		def fail() -> bytes:
			raise rendered

		return fail
	return rendered


def last_scan_start() -> datetime.datetime | None:
	"""When the last finished health scan began: the hourly scan judges what changed since."""
	return frappe.db.get_value(
		reports.DOCTYPE,
		{"scope": ["in", SCOPES], "status": ["!=", "Failed"]},
		"checked_at",
		order_by="checked_at desc",
	)


def _problems(
	problem: str,
	findings: list[dict],
	pending: dict[str, str],
	regenerated: dict[str, str | None] | None = None,
) -> Iterator[reports.Problem]:
	"""Report rows; a path whose write is pending or that was just regenerated says so."""
	regenerated = regenerated or {}
	for finding in findings:
		path = finding["path"]
		if path in regenerated:
			failure = regenerated[path]
			detail = _("regenerated") if failure is None else _("not regenerated: {0}").format(failure)
		elif path in pending:
			detail = _("write pending, retried every minute: {0}").format(pending[path])
		else:
			detail = finding["reason"]
		yield reports.Problem(
			problem, path, finding["reference_doctype"] or None, finding["reference_name"] or None, detail
		)


def regenerate(
	missing: list[dict],
	store: ContentStore,
	ctx: publishing.RenderContext,
	on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, str | None]:
	"""Write the missing files again from their documents; path → None when written, else why not.

	Nothing is written when the content root is absent or empty: that is an unmounted volume, not
	lost files, and files written now would hide under the mount once it is back.
	"""
	if not _has_entries(store.root):
		frappe.log_error(
			title=_("Memora Storage: missing files not regenerated"),
			message=_(
				"The content root {0} is missing or empty, so {1} files were not written again. "
				"If its volume is not mounted, mount it and run a health scan. If the files are really "
				"gone, use Rebuild All Content Files in CDN Settings."
			).format(store.root, len(missing)),
		)
		return {}
	outcome = {}
	for done, finding in enumerate(missing, 1):
		if on_progress:
			on_progress(done, len(missing))
		path, doctype, name = finding["path"], finding["reference_doctype"], finding["reference_name"]
		if not (doctype and name and frappe.db.exists(doctype, name)):
			continue
		try:
			written = publishing.write_document(frappe.get_doc(doctype, name), ctx, store)
		except Exception as e:  # a serialiser that fails must not stop the other files
			frappe.log_error(title=_("Memora Storage: could not render {0} {1}").format(doctype, name)[:140])
			outcome[path] = str(e) or type(e).__name__
			continue
		# A failed write is logged and left Pending by write_document; its reason is on the row.
		outcome[path] = None if written is not publishing.Outcome.FAILED else content_files.local_error(path)
	frappe.db.commit()
	return outcome


def _has_entries(root: os.PathLike) -> bool:
	try:
		with os.scandir(root) as entries:
			return any(True for _entry in entries)
	except OSError:
		return False


def _log(report: "frappe.Document", found: dict, pending: dict[str, str]) -> None:
	"""FR-016: a warning for missing files; an Error Log for invalid files and unreadable folders that the
	previous report did not have already (a file stays invalid until fixed: one log, not one an hour)."""
	if found["missing"]:
		frappe.logger("memora_storage").warning(
			f"health scan {report.name}: {found['counts']['missing']} content files missing: "
			+ ", ".join(f["path"] for f in found["missing"][:20])
		)
	previous = _previous_problems(report)
	new = [
		(kind, f)
		for kind, findings in (("Invalid", found["invalid"]), ("Not Checked", found["errors"]))
		for f in findings
		if (kind, f["path"]) not in previous
	]
	if not new:
		return
	lines = [
		f"operation: read (health scan)\npath: {f['path']}\nerrno: -\n"
		f"document: {f['reference_doctype']} {f['reference_name']}\nproblem: {kind}: {f['reason']}"
		+ (f"\nwrite pending: {pending[f['path']]}" if f["path"] in pending else "")
		for kind, f in new[:LOGGED_LIMIT]
	]
	if len(new) > LOGGED_LIMIT:
		lines.append(f"…and {len(new) - LOGGED_LIMIT} more in the report")
	frappe.log_error(
		title=_("Memora Storage: health scan found {0} unreadable or invalid content files").format(len(new)),
		message="\n\n".join(lines),
		reference_doctype=reports.DOCTYPE,
		reference_name=report.name,
	)


def _previous_problems(report: "frappe.Document") -> set[tuple[str, str]]:
	previous = frappe.get_all(
		reports.DOCTYPE,
		filters={"scope": ["in", SCOPES], "name": ["!=", report.name], "status": ["!=", "Failed"]},
		pluck="name",
		order_by="checked_at desc",
		limit=1,
	)
	if not previous:
		return set()
	return {
		(p.problem, p.path)
		for p in reports.report_problems(frappe.get_doc(reports.DOCTYPE, previous[0]))
		if p.problem in ("Invalid", "Not Checked")
	}


def save_failure(scope: str, error: Exception) -> "frappe.Document":
	"""A scan that crashed still leaves a report, so a missing nightly result is never silent."""
	return reports.save_report(
		scope, [], _("The scan failed: {0}. See Error Log.").format(error), status="Failed"
	)


# Orphans ----------------------------------------------------------------------------------------


def delete_orphans(
	report: "frappe.Document", on_progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
	"""Delete the report's orphans that are still orphans; counts of what was done and skipped.

	A file is kept when a record expects its path now, or when it changed after the scan began (someone
	wrote it since: it is not the file the report saw). Each deletion goes through the store (under the
	path's lock, with its `.prev`), and a row the path had is marked Deleted so the CDN copy goes too.
	"""
	orphans = [p.path for p in reports.report_problems(report) if p.problem == "Orphaned"]
	counts = {"deleted": 0, "gone": 0, "kept": 0, "failed": 0}
	if not orphans:
		return counts
	store = settings.content_store()
	record_tz = ZoneInfo(get_system_timezone())
	expected = {record.path for record in ExpectedRecords(publishing.new_context(), record_tz, render=False)}
	scan_began = get_datetime(report.checked_at).replace(tzinfo=record_tz).timestamp()
	for done, path in enumerate(orphans, 1):
		if on_progress:
			on_progress(done, len(orphans))
		try:
			mtime = os.lstat(paths.file_path(store.root, path)).st_mtime
		except (FileNotFoundError, paths.InvalidPathError):
			counts["gone"] += 1
			continue
		if path in expected or mtime >= scan_began:
			counts["kept"] += 1
			continue
		try:
			store.remove(path)
		except FileOperationError as e:
			content_files.record_failure(path, None, None, e)  # logged; retried as a pending removal
			counts["failed"] += 1
			continue
		if content_files.exists(path):
			content_files.record_removal(path, is_folder=False)
		counts["deleted"] += 1
	report.db_set("orphans_deleted_count", (report.orphans_deleted_count or 0) + counts["deleted"])
	report.add_comment(
		"Info",
		_(
			"Delete Orphans: {0} deleted, {1} already gone, {2} kept (a record expects them now or they "
			"changed after the scan), {3} could not be deleted (see Error Log; retried every minute)."
		).format(counts["deleted"], counts["gone"], counts["kept"], counts["failed"]),
	)
	frappe.db.commit()
	return counts


def last_report_problems() -> dict:
	"""Number card: the problems of the latest health scan, opening that report."""
	latest = frappe.get_all(
		reports.DOCTYPE,
		filters={"scope": ["in", SCOPES]},
		fields=["name", "missing_count", "orphaned_count", "stale_count", "invalid_count", "status"],
		order_by="checked_at desc",
		limit=1,
	)
	if not latest:
		return {"value": 0, "fieldtype": "Int"}
	row = latest[0]
	value = sum(row[f] or 0 for f in ("missing_count", "orphaned_count", "stale_count", "invalid_count"))
	return {"value": value, "fieldtype": "Int", "route": ["Form", reports.DOCTYPE, row.name]}
