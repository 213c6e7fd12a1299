"""Content health scan (FR-015, SC-006): the files under the content root against the records needing them.

Findings, per content path:
- missing: a record expects the file and there is none;
- orphaned: a content file that no record expects;
- invalid: the file is unreadable, not a regular file, or not valid JSON;
- stale: the file differs from a fresh render (when the record brings its bytes or a renderer), or else
  it is older than its record's `modified`.

Expected records are streamed, never held: a scan keeps sets of path strings only, so memory grows with
the number of paths, not with documents or file contents. The store keeps `.prev` backups and temp files
under its private root, outside the root a scan walks; those that writers from before it left in the
public tree are never content either (paths.is_content_file), so they are never reported.

Two scopes:
- `full_scan` walks the whole root and judges every record: it finds every missing, orphaned, stale and
  invalid file (the nightly scan).
- `incremental_scan` judges the records modified since a moment, any named paths and a random sample of
  the rest (the hourly scan). It looks for orphans in the folders holding the judged records, in their
  ancestors up to the root, and in every folder met there that holds no expected file at all (such as
  a deleted plan's folder), which it walks whole. Faults elsewhere wait for the next full scan.
"""

import datetime
import errno
import json
import os
import random
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from memora_storage.utils.paths import (
	InvalidPathError,
	is_content_file,
	is_plain_path,
	validate_relpath,
)

# Frappe stamps `modified` before the file is written, but mtimes come from the kernel's coarse clock
# (milliseconds behind) or, on NFS, from the server's clock: allow this much before calling a file stale.
DEFAULT_MTIME_SLACK = 2.0
# Records and files are read at slightly different moments: a file written this shortly before the scan
# may belong to a record the query did not see yet, so it is counted in `recent`, not called an orphan.
DEFAULT_MIN_ORPHAN_AGE = 60.0

# O_NOFOLLOW: a planted symlink is reported, never followed. O_NONBLOCK: a FIFO cannot hang the scan.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_REASON = 200

Renderer = Callable[[], bytes]
OPEN_FOLDERS = 64  # folder descriptors a metadata scan keeps open at once


@dataclass(frozen=True, slots=True)
class ExpectedFile:
	"""A record that should have a content file.

	`path` is its content path ('units/U1.json'); the scan checks it against the path rules and reports
	a bad one in `errors` instead of touching the disk. `modified` is the record's last change: an aware datetime, a naive one in the scan's `record_tz`,
	or a POSIX timestamp. `content` is the bytes the file should hold, or a callable rendering them;
	when given it decides staleness and `modified` is not used (the store leaves an identical file
	untouched, so an unchanged render keeps an old mtime).
	"""

	path: str
	modified: datetime.datetime | float | None = None
	content: bytes | Renderer | None = None
	reference_doctype: str = ""
	reference_name: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
	"""One faulty path, with the record it belongs to (to regenerate it) and why it is faulty."""

	path: str
	reason: str = ""
	reference_doctype: str = ""
	reference_name: str = ""

	def to_dict(self) -> dict[str, str]:
		return {
			"path": _printable(self.path),
			"reason": self.reason,
			"reference_doctype": self.reference_doctype,
			"reference_name": self.reference_name,
		}


@dataclass
class HealthReport:
	"""What one scan found; the lists are sorted by path.

	`records`: expected records read; `checked`: records whose file was judged; `files` and `folders`:
	content files seen and folders listed; `recent`: unexpected files too new to call orphans (see
	DEFAULT_MIN_ORPHAN_AGE); `left_behind`: names seen that no content file has, such as backups and
	temp files older writers left in public (`ContentStore.tidy` deals with them). `errors` holds
	what the scan could not judge: a record with a bad path, a renderer that raised, a folder it
	could not list.
	"""

	root: str
	scope: str
	started_at: datetime.datetime
	duration: float = 0.0
	records: int = 0
	checked: int = 0
	files: int = 0
	folders: int = 0
	recent: int = 0
	left_behind: int = 0
	missing: list[Finding] = field(default_factory=list)
	orphaned: list[str] = field(default_factory=list)
	stale: list[Finding] = field(default_factory=list)
	invalid: list[Finding] = field(default_factory=list)
	errors: list[Finding] = field(default_factory=list)

	@property
	def ok(self) -> bool:
		return not (self.missing or self.orphaned or self.stale or self.invalid or self.errors)

	def to_dict(self, limit: int | None = None) -> dict:
		"""JSON-ready summary; `limit` caps each list (the counts stay exact) so a lost disk stays storable."""
		lists = {
			"missing": [f.to_dict() for f in self.missing[:limit]],
			"orphaned": [_printable(p) for p in self.orphaned[:limit]],
			"stale": [f.to_dict() for f in self.stale[:limit]],
			"invalid": [f.to_dict() for f in self.invalid[:limit]],
			"errors": [f.to_dict() for f in self.errors[:limit]],
		}
		counts = {
			"records": self.records,
			"checked": self.checked,
			"files": self.files,
			"folders": self.folders,
			"recent": self.recent,
			**{name: len(getattr(self, name)) for name in lists},
		}
		return {
			"root": self.root,
			"scope": self.scope,
			"started_at": self.started_at.isoformat(),
			"duration": round(self.duration, 3),
			"ok": self.ok,
			"counts": counts,
			"truncated": any(len(lists[name]) < counts[name] for name in lists),
			**lists,
		}


def full_scan(
	root: str | os.PathLike,
	expected: Iterable[ExpectedFile],
	*,
	record_tz: datetime.tzinfo | None = None,
	mtime_slack: float = DEFAULT_MTIME_SLACK,
	min_orphan_age: float = DEFAULT_MIN_ORPHAN_AGE,
	read_files: bool = True,
) -> HealthReport:
	"""Judge every record and every content file under `root`.

	With `read_files`, each expected file is read: invalid JSON and a file that differs from its
	record's `content` are found too. Without, each is judged by its metadata alone (missing, not a
	regular file, empty, older than its record), which costs about what listing the names does: a
	nightly scan of 100,000 files stays within twice a bare `find | sort` plus one query.

	The disk is walked before `expected` is consumed, so a lazy query runs after the walk: a record and
	file created meanwhile are simply not seen, and a file deleted meanwhile is re-checked, not reported.
	`record_tz` is the zone of naive `modified` values (Frappe's System Settings time zone); None means
	the process's local time.
	"""
	scanner = _Scanner(root, "full", record_tz, mtime_slack)
	on_disk = set(scanner.walk(""))
	check = scanner.check if read_files else scanner.check_metadata
	try:
		for record in expected:
			path, modified = scanner.accept(record)
			if path is not None:
				check(record, modified)
				on_disk.discard(path)
	finally:
		scanner.close_folders()
	return scanner.finish(on_disk, min_orphan_age)


def incremental_scan(
	root: str | os.PathLike,
	expected: Iterable[ExpectedFile],
	*,
	since: datetime.datetime | float | None = None,
	paths: Iterable[str] = (),
	sample: int = 0,
	seed: int | None = None,
	record_tz: datetime.tzinfo | None = None,
	mtime_slack: float = DEFAULT_MTIME_SLACK,
	min_orphan_age: float = DEFAULT_MIN_ORPHAN_AGE,
) -> HealthReport:
	"""Judge records modified at or after `since`, those at `paths`, and `sample` random others.

	`expected` must still list ALL records: a file is an orphan only if no record at all expects it.
	Only the judged records' files are read, and only their folders (plus ancestors and folders with no
	expected file) are listed, so the cost follows the changes, not the size of the store. The folders
	of `paths` are listed even where no record has that path, so a file a delete left behind is found.
	"""
	scanner = _Scanner(root, "incremental", record_tz, mtime_slack)
	since_ts = _timestamp(since, record_tz)
	focus = set(paths)
	expected_paths: set[str] = set()
	expected_dirs: set[str] = {""}
	touched = {_parent(path) for path in focus if _is_valid_path(path)}
	reservoir: list[tuple[ExpectedFile, float | None]] = []
	others = 0
	rng = random.Random(seed)
	for record in expected:
		path, modified = scanner.accept(record)
		if path is None:
			continue
		expected_paths.add(path)
		_add_folder(expected_dirs, _parent(path))
		if path in focus or (since_ts is not None and modified is not None and modified >= since_ts):
			scanner.check(record, modified)
			touched.add(_parent(path))
		elif sample > 0:
			# Reservoir sampling: a uniform sample of the others without holding them all.
			others += 1
			if len(reservoir) < sample:
				reservoir.append((record, modified))
			else:
				slot = rng.randrange(others)
				if slot < sample:
					reservoir[slot] = (record, modified)
	for record, modified in reservoir:
		scanner.check(record, modified)
		touched.add(_parent(record.path))

	folders: set[str] = {""}
	for folder in touched:
		_add_folder(folders, folder)
	candidates: set[str] = set()
	for folder in folders:
		for relpath, is_dir in scanner.listdir(folder):
			if not is_dir:
				if relpath not in expected_paths:
					candidates.add(relpath)
			elif relpath not in expected_dirs:
				candidates.update(scanner.walk(relpath))
	return scanner.finish(candidates, min_orphan_age)


class _Scanner:
	"""The state of one scan: the report being filled and the rules for judging one record."""

	def __init__(
		self, root: str | os.PathLike, scope: str, record_tz: datetime.tzinfo | None, mtime_slack: float
	):
		self.root = os.fspath(root)
		self.record_tz = record_tz
		self.mtime_slack = mtime_slack
		self.started = time.time()
		self.clock = time.perf_counter()
		self.folders: dict[str, int] = {}
		self.report = HealthReport(
			root=self.root,
			scope=scope,
			started_at=datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc),
		)

	def listdir(self, folder: str) -> Iterator[tuple[str, bool]]:
		"""(relative path, is a real folder) of the content entries of one folder; a symlink is never a folder."""
		try:
			entries = os.scandir(os.path.join(self.root, folder) if folder else self.root)
		except FileNotFoundError:
			return
		except OSError as e:
			self.report.errors.append(Finding(folder or ".", f"folder unreadable: {e.strerror}"))
			return
		self.report.folders += 1
		prefix = folder + "/" if folder else ""
		with entries:
			for entry in entries:
				# No part of a content path is a dot-name or a backup: such folders hold no content either.
				if not is_content_file(entry.name):
					self.report.left_behind += 1
					continue
				if entry.is_dir(follow_symlinks=False):
					yield prefix + entry.name, True
				else:
					self.report.files += 1
					yield prefix + entry.name, False

	def walk(self, folder: str) -> Iterator[str]:
		"""Every content file under `folder`, depth first, without following symlinked folders."""
		stack = [folder]
		while stack:
			for relpath, is_dir in self.listdir(stack.pop()):
				if is_dir:
					stack.append(relpath)
				else:
					yield relpath

	def accept(self, record: ExpectedFile) -> tuple[str | None, float | None]:
		"""Count a record; return its path if it is a valid content path, and its `modified` as a timestamp."""
		self.report.records += 1
		try:
			return _valid_path(record.path), _timestamp(record.modified, self.record_tz)
		except (InvalidPathError, TypeError, ValueError) as e:
			self.report.errors.append(_finding(record, f"record cannot be checked: {e}"))
			return None, None

	def check(self, record: ExpectedFile, modified: float | None) -> None:
		"""Judge one record's file: missing, invalid, stale, or fine."""
		report = self.report
		report.checked += 1
		try:
			fd = os.open(f"{self.root}/{record.path}", _OPEN_FLAGS)
		except OSError as e:
			self.unreachable(record, e)
			return
		try:
			info = os.fstat(fd)
			if not stat.S_ISREG(info.st_mode):
				report.invalid.append(_finding(record, "not a regular file"))
				return
			data = _read(fd, info.st_size)
		except OSError as e:
			report.invalid.append(_finding(record, f"unreadable: {e.strerror}"))
			return
		finally:
			os.close(fd)
		problem = _json_problem(data)
		if problem:
			report.invalid.append(_finding(record, problem))
		elif record.content is not None:
			try:
				fresh = record.content() if callable(record.content) else record.content
			except Exception as e:
				report.errors.append(_finding(record, f"render failed: {type(e).__name__}: {e}"))
				return
			if data != fresh:
				report.stale.append(_finding(record, "differs from a fresh render"))
		else:
			self.check_age(record, info.st_mtime, modified)

	def check_metadata(self, record: ExpectedFile, modified: float | None) -> None:
		"""Judge one record's file by lstat(2) alone: missing, not a regular file, empty, or stale by mtime."""
		report = self.report
		report.checked += 1
		folder, _, name = record.path.rpartition("/")
		try:
			info = os.lstat(name, dir_fd=self.folder(folder))
		except OSError as e:
			self.unreachable(record, e)
			return
		if not stat.S_ISREG(info.st_mode):
			reason = (
				"a symbolic link, not a regular file" if stat.S_ISLNK(info.st_mode) else "not a regular file"
			)
			report.invalid.append(_finding(record, reason))
		elif not info.st_size:
			report.invalid.append(_finding(record, "empty file"))
		else:
			self.check_age(record, info.st_mtime, modified)

	def folder(self, folder: str) -> int:
		"""An open descriptor of a content folder, kept for the next records in it: lstat(2) of a name
		in an open folder costs a fifth of resolving the whole path again (records come folder by
		folder). FileNotFoundError if it is gone, as lstat of a path in it would raise."""
		fd = self.folders.get(folder)
		if fd is None:
			if len(self.folders) >= OPEN_FOLDERS:
				self.close_folders()
			fd = os.open(
				f"{self.root}/{folder}" if folder else self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
			)
			self.folders[folder] = fd
		return fd

	def close_folders(self) -> None:
		for fd in self.folders.values():
			os.close(fd)
		self.folders.clear()

	def unreachable(self, record: ExpectedFile, error: OSError) -> None:
		"""A record's file that could not be opened or looked at: missing, or invalid and why."""
		if isinstance(error, FileNotFoundError | NotADirectoryError):
			self.report.missing.append(_finding(record, "no file"))
		else:
			self.report.invalid.append(_finding(record, _open_failure(error)))

	def check_age(self, record: ExpectedFile, mtime: float, modified: float | None) -> None:
		"""Stale: the file was last written before its record last changed (beyond the clock slack)."""
		if modified is not None and mtime < modified - self.mtime_slack:
			behind = modified - mtime
			self.report.stale.append(_finding(record, f"file is {behind:.0f} s older than its record"))

	def finish(self, candidates: Iterable[str], min_orphan_age: float) -> HealthReport:
		"""Confirm orphan candidates (still there, old enough), sort the findings, stop the clock."""
		report = self.report
		for path in candidates:
			try:
				mtime = os.lstat(f"{self.root}/{path}").st_mtime
			except FileNotFoundError:
				continue
			except OSError:
				mtime = 0.0
			if mtime > self.started - min_orphan_age:
				report.recent += 1
			else:
				report.orphaned.append(path)
		report.orphaned.sort()
		for findings in (report.missing, report.stale, report.invalid, report.errors):
			findings.sort(key=lambda f: f.path)
		report.duration = time.perf_counter() - self.clock
		return report


def _finding(record: ExpectedFile, reason: str) -> Finding:
	return Finding(
		path=record.path if isinstance(record.path, str) else repr(record.path),
		reason=reason[:_MAX_REASON],
		reference_doctype=record.reference_doctype,
		reference_name=record.reference_name,
	)


def _is_valid_path(path: str) -> bool:
	try:
		_valid_path(path)
	except InvalidPathError:
		return False
	return True


def _valid_path(path: str) -> str:
	if isinstance(path, str) and is_plain_path(path):
		return path
	return validate_relpath(path)


def _timestamp(value: datetime.datetime | float | None, tz: datetime.tzinfo | None) -> float | None:
	if value is None:
		return None
	if isinstance(value, datetime.datetime):
		if value.tzinfo is None and tz is not None:
			value = value.replace(tzinfo=tz)
		return value.timestamp()
	return float(value)


class NaiveTimes:
	"""POSIX timestamps of naive 'YYYY-MM-DD HH:MM:SS[.ffffff]' texts read in one time zone (as a
	database hands out `modified`), for scans: the zone's offset is worked out once per minute of
	text, since offsets change on whole minutes, so records saved in the same minute (an import's)
	cost a dict lookup each. A text of another shape is parsed whole."""

	def __init__(self, tz: datetime.tzinfo | None, minutes: int = 4096):
		self.tz = tz
		self.limit = minutes
		self._minutes: dict[str, float] = {}

	def __call__(self, text: str) -> float:
		minute, second = text[:16], text[17:]
		if not (
			text[16:17] == ":"
			and second[:2].isdigit()
			and (len(second) == 2 or (second[2] == "." and second[3:].isdigit()))
		):
			return _timestamp(datetime.datetime.fromisoformat(text), self.tz)
		start = self._minutes.get(minute)
		if start is None:
			if len(self._minutes) >= self.limit:
				self._minutes.clear()
			start = self._minutes[minute] = _timestamp(datetime.datetime.fromisoformat(minute), self.tz)
		return start + float(second)


def _parent(path: str) -> str:
	return path.rpartition("/")[0]


def _add_folder(folders: set[str], folder: str) -> None:
	"""Add `folder` and its ancestors to `folders`, which holds '' (the root) and all ancestors of its members."""
	while folder not in folders:
		folders.add(folder)
		folder = _parent(folder)


def _read(fd: int, size: int) -> bytes:
	data = os.read(fd, size)
	if len(data) == size:  # the usual case: files are replaced by rename, never grown in place
		return data
	parts = [data]
	while chunk := os.read(fd, 1 << 16):
		parts.append(chunk)
	return b"".join(parts)


def _json_problem(data: bytes) -> str:
	"""Why `data` is not a UTF-8 JSON document (RFC 8259, and what canonical.dumps writes), or '' if it is."""
	try:
		json.loads(data.decode("utf-8"))
	except UnicodeDecodeError:
		return "not valid UTF-8 text"
	except json.JSONDecodeError as e:
		if not data.strip():
			return "empty file"
		return f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
	except RecursionError:
		return "not valid JSON: nested too deeply"
	return ""


def _open_failure(error: OSError) -> str:
	if error.errno == errno.ELOOP:
		return "a symbolic link, not a regular file"
	return f"unreadable: {error.strerror}"


def _printable(path: str) -> str:
	"""A path safe for JSON: file names that are not UTF-8 reach Python as lone surrogates."""
	return path.encode("utf-8", "backslashreplace").decode("utf-8")
