"""The content store on disk: atomic writes with a `.prev` backup, deletes and rollback, one writer per path.

A reader of a content path sees, at every instant, either the whole old file or the whole new one, and
nothing else ever appears in the public tree but content files and their folders: new bytes go to a temp
file under the private root (`sites/SITE/private/memora_content/tmp`, which no web server serves), are
fsynced, and are renamed over the public file; the previous version is kept as a hard link under
`private/memora_content/prev`. Both roots must be on one filesystem, so link(2) and rename(2) work
between them; a write across two filesystems fails with a clear error instead of copying.

A `filelock.FileLock` (flock, honoured by NFSv4) on a file in `lock_dir` serialises the writers of a
path across processes and hosts. Paths share `LOCK_SLOTS` lock files, by a hash of the path: a new
path makes no lock file of its own (a file creation, as dear as the content file's), the lock files
stay a fixed few however many paths a site has, and two writers of different paths wait for each
other only once in `LOCK_SLOTS` (a lock per folder would make every save of a Unit, all in `units/`,
wait for any other).
"""

import ctypes
import errno
import hashlib
import os
import random
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from memora_storage.utils import canonical, disk
from memora_storage.utils.paths import (
	PREV_DIR,
	PREV_SUFFIX,
	TEMP_DIR,
	TEMP_PREFIX,
	TEMP_SUFFIX,
	InvalidPathError,
	default_private_root,
	file_path,
	prev_path,
	validate_relpath,
)

FILE_MODE = 0o644  # the web server (another user) must read what we write
DIR_MODE = 0o755  # ...and enter the folders that hold it
PRIVATE_DIR_MODE = 0o700  # nobody but the site's user enters the private root
DEFAULT_LOCK_TIMEOUT = 60.0
# Lock files that paths share, by a hash of the path. Every process and host writing a site must use the
# same number: changing it lets an old and a new process write one path at once.
LOCK_SLOTS = 4096
# How often a writer asks again for a lock another holds (filelock's default is 50 ms): a save waiting for
# an import's batch gets in once it ends, not up to 50 ms later.
LOCK_POLL = 0.005
# Paths per `rewrite_batches` batch: each holds its lock file open (shared with other paths at most),
# and the open-files hard limit may be as low as 20,000; past a few hundred files, a larger batch saves
# no measurable sync time.
DEFAULT_BATCH = 512
# A batch of this many files or fewer is fsynced file by file: syncfs(2) flushes the whole filesystem,
# others' dirty pages too (on the benchmark machine's ext4: one fsync 4.0 ms, one syncfs 5.3 ms, four
# fsyncs 21 ms).
SYNC_EACH_UP_TO = 1
DEFAULT_TEMP_AGE = 600.0  # seconds: a write takes milliseconds, so an older temp file is a killed writer's
THREADED_HASH_BYTES = 1 << 20  # from here on, hashing on a thread beside the write's I/O pays for the thread
READ_CHUNK = 1 << 18
# link(2) answers these where a filesystem has no hard links; the previous version is then copied.
_NO_HARD_LINKS = {errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}

_PATH_LOCK = re.compile(r"[0-9a-f]{40}\.lock")  # an earlier version's lock of one path: SHA1(path).lock

_REASONS = {
	errno.ENOSPC: "the disk is full",
	errno.EDQUOT: "the disk quota is exhausted",
	errno.EACCES: "permission denied",
	errno.EPERM: "permission denied",
	errno.EROFS: "the filesystem is read-only",
	errno.ENOENT: "no such file",
}


class FileOperationError(OSError):
	"""A file operation that failed, with what was attempted, on which path and why (FR-016)."""

	def __init__(self, operation: str, path: str, cause: BaseException):
		self.operation = operation
		self.path = path
		self.cause = cause
		code = getattr(cause, "errno", None)
		strerror = getattr(cause, "strerror", None)
		# The OS's stock text for an errno gives way to a plainer one; words written for this case
		# (the guard's, rollback's "no previous version") are kept.
		own_words = code is not None and strerror is not None and strerror != os.strerror(code)
		reason = strerror if own_words else _REASONS.get(code) or strerror or str(cause)
		if isinstance(cause, disk.DiskSpaceLowError):
			if cause.needed > cause.status.free:
				# The guard's percentage wording ("99% free, minimum 0%") hides why a too-big write was refused.
				reason = (
					f"the disk is full: {cause.needed} bytes to write, "
					f"{cause.status.free} bytes free on {cause.status.path}"
				)
		super().__init__(code, f"could not {operation} content file {path!r}: {reason}")

	def __str__(self) -> str:
		return str(self.strerror)


@dataclass(frozen=True)
class WriteResult:
	path: str
	sha256: str
	size: int
	changed: bool


@dataclass(frozen=True)
class RewriteResult:
	"""One file of `rewrite_many`: its version before and after, or why it was left alone."""

	path: str
	old_sha256: str | None = None
	sha256: str | None = None
	size: int = 0
	changed: bool = False
	missing: bool = False
	error: "FileOperationError | None" = None


@dataclass
class _Staged:
	"""A file of a rewrite batch whose new bytes are known, on its way to a temp file and the rename."""

	path: str
	folder: int
	name: str
	data: bytes
	old_sha256: str
	digest: "_Digest | None" = None
	tmp: str = ""
	keep: bool = False  # a `write_many` file that exists: its current version becomes `.prev`


@dataclass
class TidyResult:
	"""What `ContentStore.tidy` did: backups moved out of the public tree, and temp files deleted."""

	moved: int = 0  # public `.prev` files now under the private root
	dropped: int = 0  # public `.prev` files deleted because the private root already held a newer one
	temps: int = 0  # stale temp files deleted, public and private
	errors: list[str] = field(default_factory=list)  # what could not be done, one line each


class ContentStore:
	"""The files under one content root (`sites/SITE/public/files/memora_content`).

	`private_root` holds what must not be served (`prev/`, `tmp/`); by default the site's
	`private/memora_content` for a site's content root, else a sibling `NAME.private`.
	"""

	def __init__(
		self,
		root: str | os.PathLike,
		lock_dir: str | os.PathLike,
		min_free_percent: float = 0.0,
		lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
		private_root: str | os.PathLike | None = None,
	):
		self.root = Path(root)
		self.private_root = Path(private_root) if private_root is not None else default_private_root(root)
		self.lock_dir = Path(lock_dir)
		self._lock_dir_made = False
		self.min_free_percent = min_free_percent
		self.lock_timeout = lock_timeout
		self._real_root = os.path.realpath(self.root)
		self._tmp_dir = os.path.join(self.private_root, TEMP_DIR)
		self._prev_dir = os.path.join(self.private_root, PREV_DIR)
		real_private = os.path.realpath(self.private_root)
		if os.path.commonpath([self._real_root, real_private]) in (self._real_root, real_private):
			# A scan or a CDN verify walks the content root: backups inside it would be served and listed.
			raise ValueError(
				f"the private root {self.private_root} and the content root {self.root} must not contain each other"
			)

	def lock(self, path: str) -> AbstractContextManager[None]:
		"""Hold the writer lock of one content path (also across hosts sharing `sites/`).

		Its lock file is shared with other paths (`LOCK_SLOTS`): a process holding it must write no
		other path meanwhile, or flock may make it wait for itself.
		"""
		return self._slot_lock(_slot_of(validate_relpath(path)), path)

	@contextmanager
	def _slot_lock(self, slot: int, path: str) -> Iterator[None]:
		"""The writer lock of one slot; `path` names the file it is taken for, in errors."""
		if not self._lock_dir_made:
			try:
				self.lock_dir.mkdir(parents=True, exist_ok=True)
			except OSError as e:
				raise FileOperationError("lock", path, e) from e
			self._lock_dir_made = True
		try:
			# `slot-NNN.lock`: the per-path locks of earlier versions were `SHA1.lock` in the same place.
			lock = FileLock(f"{self.lock_dir}/slot-{slot:03x}.lock", timeout=self.lock_timeout)
			with lock.acquire(poll_interval=LOCK_POLL):
				yield
		except Timeout as e:
			held = TimeoutError(errno.ETIMEDOUT, f"another writer held the lock for {self.lock_timeout:g} s")
			raise FileOperationError("lock", path, held) from e

	def _lock_batch(self, paths: list[str], held: ExitStack) -> dict[str, FileOperationError]:
		"""Take the writer locks of a batch's paths until `held` closes, each slot once and in sorted
		order, so two batch writers never deadlock; returns, for each path whose lock was not taken,
		why. An invalid path takes a lock too, unread: it fails alone when staged."""
		slots: dict[int, list[str]] = {}
		for path in paths:
			slots.setdefault(_slot_of(path), []).append(path)
		refused = {}
		for slot in sorted(slots):
			try:
				held.enter_context(self._slot_lock(slot, slots[slot][0]))
			except FileOperationError as e:
				refused.update({path: FileOperationError("lock", path, e.cause) for path in slots[slot]})
		return refused

	def write(self, path: str, data: bytes) -> WriteResult:
		"""Atomically replace the file at `path` with `data`; identical bytes leave file and `.prev` alone."""
		validate_relpath(path)
		digest = _Digest(data)
		with self.lock(path):
			try:
				changed = self._write_locked(path, data, digest)
			except OSError as e:
				raise FileOperationError("write", path, self._explain(e)) from e
		return WriteResult(path, digest.result(), len(data), changed=changed)

	def _write_locked(self, path: str, data: bytes, digest: "_Digest") -> bool:
		name = path.rpartition("/")[2]
		folder = self._open_folder(path)
		try:
			current = self._current(folder, name, path)
			if current is not None and current.st_size == len(data) and _same_bytes(folder, name, data):
				return False
			disk.ensure_space(self.root, self.min_free_percent, needed=len(data))
			tmp = self._write_temp(data, digest)
			try:
				if folder is None:
					folder = self._make_folder(path)
				self._commit(folder, name, path, tmp, keep=current is not None)
			except BaseException:
				_unlink_quietly(tmp)
				raise
		finally:
			if folder is not None:
				os.close(folder)
		return True

	def write_many(
		self, files: dict[str, bytes], batch_size: int = DEFAULT_BATCH
	) -> list["WriteResult | FileOperationError"]:
		"""`write` for many files at once: each file's result, or why it was not written, in the order given.

		The files of a transaction are written together, in batches of `batch_size` files taken in the
		order given, whose durability work is shared as in `rewrite_batches`: temp files, one syncfs(2),
		then for each file, in the order given, the `.prev` step and the rename of `_commit`, then one
		fsync per public folder, where `write` pays two fsyncs per file. The caller puts children before
		the files listing them, so a link never points at a file that is not there yet. Identical bytes
		leave file and `.prev` alone, as in `write`.

		Crash safety is `write`'s and `rewrite_batches`' together: nothing public changes before the
		sync, which makes every temp file whole on disk; each `.prev` and each file is then replaced by
		one rename, so after a crash at any point every path holds its old or its new bytes, whole, and
		its `.prev` a whole earlier version. A crash leaves only stale names under `tmp/` (`tidy`).
		Each batch's writer locks are taken in sorted order and held until its folders are synced.
		"""
		if batch_size < 1:
			raise ValueError(f"batch_size must be at least 1, got {batch_size}")
		ordered = list(files)
		results: list[WriteResult | FileOperationError] = []
		for start in range(0, len(ordered), batch_size):
			results += self._write_batch({path: files[path] for path in ordered[start : start + batch_size]})
		return results

	def _write_batch(self, files: dict[str, bytes]) -> list["WriteResult | FileOperationError"]:
		results: dict[str, WriteResult | FileOperationError] = {}

		def fail(item: _Staged, error: BaseException) -> None:
			results[item.path] = FileOperationError("write", item.path, error)

		folders: dict[str, int | None] = {}
		with ExitStack() as held:
			refused = self._lock_batch(list(files), held)
			staged = self._stage_all(
				list(files),
				lambda path: self._stage_write(path, files[path], held, refused, folders),
				results,
				lambda path, e: FileOperationError("write", path, e),
			)
			position = {path: i for i, path in enumerate(files)}
			staged.sort(key=lambda item: position[item.path])  # renamed in the order given
			asides: list[str | None] = []
			held.callback(_unlink_all, asides)  # once the folders are synced
			renamed: dict[int, list[_Staged]] = {}
			for item in self._write_staged(staged, fail, held):
				try:
					if item.folder is None:
						item.folder = self._batch_folder(item.path, held, folders, make=True)
					asides.append(self._swap(item.folder, item.name, item.path, item.tmp, item.keep))
				except OSError as e:
					fail(item, self._explain(e))
					continue
				renamed.setdefault(item.folder, []).append(item)
			for item in _sync_folders(renamed, fail):
				results[item.path] = WriteResult(item.path, item.digest.result(), len(item.data), True)
		return [results[path] for path in files]

	def _stage_all(
		self,
		paths: list[str],
		stage: Callable[[str], "_Staged | WriteResult | RewriteResult"],
		results: dict,
		failed: Callable[[str, BaseException], "FileOperationError | RewriteResult"],
	) -> list["_Staged"]:
		"""Stage each path in the order given: the files to write; `results` takes the rest."""
		staged = []
		for path in paths:
			try:
				item = stage(path)
			except Exception as e:
				results[path] = failed(path, self._explain(e) if isinstance(e, OSError) else e)
				continue
			if isinstance(item, _Staged):
				staged.append(item)
			else:
				results[path] = item
		return staged

	def _stage_write(
		self,
		path: str,
		data: bytes,
		held: ExitStack,
		refused: dict[str, FileOperationError],
		folders: dict[str, int | None],
	) -> "WriteResult | _Staged":
		"""A result if the file already holds `data`, else the file to write."""
		_check_locked(validate_relpath(path), refused)
		folder = self._batch_folder(path, held, folders)
		name = path.rpartition("/")[2]
		current = self._current(folder, name, path)
		if current is not None and current.st_size == len(data) and _same_bytes(folder, name, data):
			return WriteResult(path, canonical.sha256(data), len(data), changed=False)
		return _Staged(path, folder, name, data, "", keep=current is not None)

	def _batch_folder(
		self, path: str, held: ExitStack, folders: dict[str, int | None], make: bool = False
	) -> int | None:
		"""The open public folder of `path`, one descriptor per folder and batch; made if `make`.

		A folder found missing is remembered as None, so the files of a new folder look for it once.
		"""
		relative = _folder_of(path)
		if relative not in folders or (make and folders[relative] is None):
			folder = self._make_folder(path) if make else self._open_folder(path)
			if folder is not None:
				held.callback(os.close, folder)
			folders[relative] = folder
		return folders[relative]

	def rewrite_many(
		self,
		paths: Iterable[str],
		transform: Callable[[str, bytes], bytes | None],
		before_commit: Callable[[list["RewriteResult"]], None] | None = None,
		batch_size: int = DEFAULT_BATCH,
	) -> list["RewriteResult"]:
		"""`rewrite_batches`, all batches' results in one list (sorted by path)."""
		return [
			result
			for batch in self.rewrite_batches(paths, transform, before_commit, batch_size)
			for result in batch
		]

	def rewrite_batches(
		self,
		paths: Iterable[str],
		transform: Callable[[str, bytes], bytes | None],
		before_commit: Callable[[list["RewriteResult"]], None] | None = None,
		batch_size: int = DEFAULT_BATCH,
	) -> Iterator[list["RewriteResult"]]:
		"""Replace each file by `transform(path, its bytes)` (None or the same bytes keep it), in batches
		of `batch_size` sorted paths whose durability work is shared; each batch's results are yielded
		once it is durable and its locks are released, so the caller can record it before the next.

		A batch costs one filesystem sync (syncfs(2) of the private root's filesystem, which holds
		every temp file) and one fsync per public folder, where `write` pays two fsyncs per file.
		Each path's writer lock is held from before its bytes are read until its folder is synced, so
		a `write` of the same path meanwhile waits and is never overwritten by bytes derived from
		older ones; locks are taken in sorted order, so batch writers cannot deadlock each other.
		Every lock holds a file open, as does each folder: keep `batch_size` far below the open-files
		limit. Files that do not exist are reported `missing`; a file that cannot be read, transformed
		(an exception from `transform`) or replaced gets its `error`, and the others go on. The disk
		guard runs once per batch, for the sum of its new files' sizes. `before_commit` sees the
		changed files' results after their new bytes are durable and before any replaces its file;
		an exception from it abandons the batch with no file replaced.

		`.prev` is left alone: a rewrite changes links, not content, so the version worth rolling back
		to stays the one before the last `write` (and a rewrite costs one rename, not the three
		metadata changes of keeping a backup).

		Crash safety. Until the first rename nothing public has changed: a crash leaves stale temp
		files under the private root, which `tidy` deletes. The sync returns only once every temp
		file's bytes are on disk, and it comes before the batch's first rename; each file is then
		replaced by one rename(2), atomic: after a crash at any point its name holds the old inode or
		the new one, each with whole bytes (without the sync, ext4 may bring back a renamed name whose
		delayed blocks were never written, as an empty file). Files of one batch are independent: a
		crash mid-batch leaves some new and some old, each whole. `.prev` is never touched, so it
		stays whole. Durability: each public folder is fsynced after its last rename, which makes
		every rename in it durable before the batch's results are returned.
		"""
		if batch_size < 1:
			raise ValueError(f"batch_size must be at least 1, got {batch_size}")
		ordered = sorted(set(paths))
		for start in range(0, len(ordered), batch_size):
			yield self._rewrite_batch(ordered[start : start + batch_size], transform, before_commit)

	def _rewrite_batch(
		self,
		batch: list[str],
		transform: Callable[[str, bytes], bytes | None],
		before_commit: Callable[[list["RewriteResult"]], None] | None,
	) -> list["RewriteResult"]:
		results: dict[str, RewriteResult] = {}
		folders: dict[str, int | None] = {}

		def fail(item: _Staged, error: BaseException) -> None:
			results[item.path] = _failed("write", item.path, error, item.old_sha256)

		with ExitStack() as held:
			refused = self._lock_batch(batch, held)
			staged = self._stage_all(
				batch,
				lambda path: self._stage(path, transform, held, refused, folders),
				results,
				lambda path, e: _failed("rewrite", path, e),
			)
			staged = self._write_staged(staged, fail, held)
			for item in staged:
				results[item.path] = RewriteResult(
					item.path, item.old_sha256, item.digest.result(), len(item.data), changed=True
				)
			if before_commit and staged:
				before_commit([results[item.path] for item in staged])
			renamed: dict[int, list[_Staged]] = {}
			for item in staged:
				try:
					os.replace(item.tmp, item.name, dst_dir_fd=item.folder)
				except OSError as e:
					fail(item, self._explain(e))
					continue
				renamed.setdefault(item.folder, []).append(item)
			_sync_folders(renamed, fail)
		return [results[path] for path in batch]

	def _stage(
		self,
		path: str,
		transform: Callable[[str, bytes], bytes | None],
		held: ExitStack,
		refused: dict[str, FileOperationError],
		folders: dict[str, int | None],
	) -> "RewriteResult | _Staged":
		"""Read and transform `path`, its lock held for the batch: a result if it stays as it is."""
		_check_locked(validate_relpath(path), refused)
		folder = self._batch_folder(path, held, folders)
		name = path.rpartition("/")[2]
		if folder is None or self._current(folder, name, path) is None:
			return RewriteResult(path, missing=True)
		data = _read_at(folder, name)
		old = canonical.sha256(data)
		new = transform(path, data)
		if new is None or new == data:
			return RewriteResult(path, old, old, len(data))
		return _Staged(path, folder, name, new, old)

	def _write_staged(
		self, staged: list["_Staged"], fail: Callable[["_Staged", BaseException], None], held: ExitStack
	) -> list["_Staged"]:
		"""The staged files written to temp files and synced at once; `fail` hears of those that were not."""
		if not staged:
			return []
		try:
			disk.ensure_space(self.root, self.min_free_percent, needed=sum(len(item.data) for item in staged))
		except OSError as e:
			for item in staged:
				fail(item, e)
			return []
		written = []
		each = len(staged) <= SYNC_EACH_UP_TO
		for item in staged:
			item.digest = _Digest(item.data)
			try:
				item.tmp = self._write_temp(item.data, item.digest, sync=each)
			except OSError as e:
				fail(item, self._explain(e))
				continue
			held.callback(_unlink_quietly, item.tmp)  # gone once renamed; a failed file's is removed
			written.append(item)
		if written and not each:
			try:
				_sync_filesystem(self._tmp_dir)
			except OSError as e:
				for item in written:
					fail(item, e)
				return []
		return written

	def read(self, path: str) -> bytes:
		"""The bytes of the file at `path`."""
		try:
			return file_path(self.root, path).read_bytes()
		except OSError as e:
			raise FileOperationError("read", path, e) from e

	def exists(self, path: str) -> bool:
		return file_path(self.root, path).is_file()

	def remove(self, path: str) -> bool:
		"""Delete the file at `path` and its `.prev`; True if anything was there."""
		target = file_path(self.root, path)
		# The file first: a delete refused there leaves the backup too. Then a `.prev` that a writer from
		# before the private root left beside the file, then the private one. Should a power cut undo that
		# last step (the public folder's fsync need not cover it), a backup is left that nothing serves.
		files = (target, target.with_name(target.name + PREV_SUFFIX), prev_path(self.private_root, path))
		removed = False
		with self.lock(path):
			for file in files:
				try:
					file.unlink()
					removed = True
				except FileNotFoundError:
					pass
				except OSError as e:
					raise FileOperationError("delete", path, e) from e
			_fsync_dir_if_exists(target.parent)
		return removed

	def remove_tree(self, path: str) -> int:
		"""Delete a folder of content (a Plan's `plans/{plan}`) and its backups; returns files removed."""
		folder = file_path(self.root, path)
		backups = Path(self._prev_dir, path)
		count = 0
		for tree in (folder, backups):  # in the order of `remove`
			if tree.is_dir():
				count += sum(len(files) for _, _, files in os.walk(tree))
				try:
					shutil.rmtree(tree)
				except OSError as e:
					raise FileOperationError("delete", path, e) from e
		_fsync_dir_if_exists(folder.parent)
		return count

	def rollback(self, path: str) -> WriteResult:
		"""Swap the file at `path` with its `.prev` (FR-004), so the previous version is live again."""
		validate_relpath(path)
		with self.lock(path):
			try:
				data = self._rollback_locked(path)
			except OSError as e:
				raise FileOperationError("roll back", path, self._explain(e)) from e
		return WriteResult(path, canonical.sha256(data), len(data), changed=True)

	def _rollback_locked(self, path: str) -> bytes:
		prev = self._prev(path)
		if not os.path.isfile(prev):
			raise FileNotFoundError(errno.ENOENT, "no previous version")
		name = path.rpartition("/")[2]
		folder = self._open_folder(path)
		if folder is None:
			raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
		try:
			if self._current(folder, name, path) is None:
				raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
			self._make_private(Path(self._tmp_dir))
			previous = self._link_aside(prev)  # a second name for it, to be renamed into public
			if previous is None:
				raise FileNotFoundError(errno.ENOENT, "no previous version")
			try:
				self._commit(folder, name, path, previous, keep=True)
			except BaseException:
				_unlink_quietly(previous)
				raise
			return _read_at(folder, name)
		finally:
			os.close(folder)

	def drop_path_locks(self) -> int:
		"""Delete the lock files of earlier versions, one per path ever written (`SHA1.lock`, a hundred
		thousand for a site of as many Units); the shared slot locks that replaced them stay. Returns how
		many were deleted."""
		dropped = 0
		try:
			entries = os.scandir(self.lock_dir)
		except FileNotFoundError:
			return 0
		with entries:
			for entry in entries:
				if _PATH_LOCK.fullmatch(entry.name):
					_unlink_quietly(entry.path)
					dropped += 1
		return dropped

	def tidy(self, min_temp_age: float = DEFAULT_TEMP_AGE, public: bool = True) -> TidyResult:
		"""Move `.prev` files out of the public tree into the private root, and delete stale temp files.

		Writers from before the private root kept `NAME.prev` and their `.NAME.XXXXXXXX.tmp` files beside the
		content, where a guest could fetch them. Each backup moves under its path's writer lock; when the
		private root already holds a more recent backup, the public one is deleted. Temp files older
		than `min_temp_age` seconds, public or private, were left by killed writers. `public=False` leaves
		the public tree unwalked, for a caller whose own walk saw nothing to move there.
		"""
		result = TidyResult()
		cutoff = time.time() - min_temp_age
		walk = (
			os.walk(self.root, onerror=lambda e: result.errors.append(_line(e)))
			if public and self.root.is_dir()
			else ()
		)
		for folder, dirs, files in walk:
			dirs.sort()
			relative = os.path.relpath(folder, self.root)
			base = "" if relative == "." else relative + "/"
			for name in sorted(files):
				try:
					if name.endswith(PREV_SUFFIX):
						self._adopt_backup(base + name, result)
					elif name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
						result.temps += _unlink_if_older(os.path.join(folder, name), cutoff)
				except OSError as e:
					result.errors.append(f"{base}{name}: {_line(e)}")
		try:
			with os.scandir(self._tmp_dir) as entries:
				for entry in entries:
					try:
						result.temps += _unlink_if_older(entry.path, cutoff)
					except OSError as e:
						result.errors.append(f"{entry.path}: {_line(e)}")
		except FileNotFoundError:
			pass
		if result.moved or result.dropped or result.temps:
			os.sync()  # a one-off: make the moves durable before the caller records them as done
		return result

	def _adopt_backup(self, relfile: str, result: TidyResult) -> None:
		path = relfile[: -len(PREV_SUFFIX)]
		try:
			validate_relpath(path)
			guard = self.lock(path)
		except InvalidPathError:
			guard = nullcontext()  # not a content path: no writer locks it
		with guard:
			source = os.path.join(self.root, relfile)
			target = os.path.join(self._prev_dir, relfile)
			try:
				info = os.lstat(source)
			except FileNotFoundError:
				return
			if not stat.S_ISREG(info.st_mode):
				result.errors.append(f"{relfile}: not a regular file, left alone")
				return
			try:
				kept = os.lstat(target)
			except FileNotFoundError:
				kept = None
			if kept is not None and kept.st_ctime_ns >= info.st_ctime_ns:
				os.unlink(source)  # the private backup was kept later: it is the version before the file
				result.dropped += 1
				return
			self._make_private(Path(target).parent)
			os.replace(source, target)
			result.moved += 1

	# The steps of a write -----------------------------------------------------------------------------

	def _open_folder(self, path: str) -> int | None:
		"""A descriptor of the public folder of `path`, checked to lie in the root; None if it does not exist."""
		relative = _folder_of(path)
		folder = os.path.join(self.root, relative) if relative else os.fspath(self.root)
		try:
			fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
		except FileNotFoundError:
			file_path(self.root, path)  # a symlinked folder pointing out is refused before anything is made
			return None
		try:
			# What the kernel resolved the folder to (symlinks and all), without a lstat per component.
			real = os.readlink(f"/proc/self/fd/{fd}")
		except OSError:
			real = os.path.realpath(folder)  # no /proc
		if real != self._real_root and not real.startswith(self._real_root + "/"):
			os.close(fd)
			raise InvalidPathError(f"path {path!r} resolves outside the content root")
		return fd

	def _make_folder(self, path: str) -> int:
		_make_folders(file_path(self.root, path).parent, DIR_MODE)
		folder = self._open_folder(path)
		if folder is None:
			raise FileNotFoundError(errno.ENOENT, "the folder was deleted while it was being written to")
		return folder

	def _make_private(self, folder: Path) -> None:
		"""Create `folder` in the private root as 0700; a missing `sites/SITE/private` itself is the site's, 0755."""
		_make_folders(self.private_root.parent, DIR_MODE)
		_make_folders(folder, PRIVATE_DIR_MODE)

	def _current(self, folder: int | None, name: str, path: str) -> os.stat_result | None:
		"""The file now at `name`, or None; a symlink is followed only if it stays in the root."""
		if folder is None:
			return None
		try:
			info = os.lstat(name, dir_fd=folder)
			if stat.S_ISLNK(info.st_mode):
				file_path(self.root, path)
				info = os.stat(name, dir_fd=folder)
		except FileNotFoundError:
			return None
		if not stat.S_ISREG(info.st_mode):
			raise OSError(errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL, "not a regular file")
		return info

	def _prev(self, path: str) -> str:
		"""`paths.prev_path` as a string, for a path already validated: it is on the write path."""
		return f"{self._prev_dir}/{path}{PREV_SUFFIX}"

	def _temp_path(self) -> str:
		# 64 random bits from `random`, which reseeds in a forked child: no syscall, and names stay
		# distinct across processes and hosts sharing the private root.
		return f"{self._tmp_dir}/{random.getrandbits(64):016x}{TEMP_SUFFIX}"

	def _write_temp(self, data: bytes, digest: "_Digest", sync: bool = True) -> str:
		"""Write `data` to a fresh file under the private root and fsync it (unless the caller syncs a
		batch at once); the caller renames it."""
		tmp = self._temp_path()
		flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
		try:
			fd = os.open(tmp, flags, FILE_MODE)
		except FileNotFoundError:
			self._make_private(Path(self._tmp_dir))
			fd = os.open(tmp, flags, FILE_MODE)
		try:
			os.fchmod(fd, FILE_MODE)  # whatever the umask: it is readable the moment it lands in public
			_write_all(fd, data)
			digest.start()  # the fsync below mostly waits for the disk: hash meanwhile
			if sync:
				os.fsync(fd)
		except BaseException:
			os.close(fd)
			_unlink_quietly(tmp)
			raise
		os.close(fd)
		return tmp

	def _commit(self, folder: int, name: str, path: str, new: str, keep: bool) -> None:
		"""Rename the fsynced file `new` over `name` in `folder`, the current version kept as `.prev` first.

		Order: the old `.prev` gets a second name under `tmp/`, the current file is hard-linked under `tmp/`
		and that link renamed over `.prev`, `new` is renamed over the file, the public folder is fsynced, and
		only then is the old `.prev`'s second name deleted. `.prev` is replaced by a rename, so it exists
		at every instant, even for a writer killed halfway; a failure before the file's rename puts the old
		`.prev` back, so a refused write leaves file and `.prev` as they were.

		Durability. What POSIX offers is that a rename is durable once the folder holding the new name is
		fsynced (and the file's data once the file is fsynced, which `_write_temp` did before): the content
		file is durable when this returns, on any filesystem that honours fsync. `.prev` lives in another
		folder, which is not fsynced: a second folder fsync costs another device flush (0.11 ms on the
		benchmark machine, two thirds of what a 2 KB write may add to a bare durable replace). On ext4 and
		XFS the one fsync covers it: their journal (log) commits transactions strictly in order, a folder
		fsync forces the transaction holding that folder's last change (ext4: jbd2_complete_transaction on
		the inode's i_sync_tid; XFS: a log force up to its commit sequence), and the `.prev` steps came
		before the file's rename, so they sit in that transaction or an earlier one. An NFS server commits
		each link and rename before it answers. On other filesystems (btrfs logs per inode) a power cut soon
		after a write may leave `.prev` one version older, never torn: it is always a whole, fsynced earlier
		version. Names a crash leaves under `tmp/` are stale files that `tidy` deletes.
		"""
		older = self._swap(folder, name, path, new, keep)
		os.fsync(folder)
		_unlink_quietly(older)  # after the fsync: freeing its blocks is not the commit's business

	def _swap(self, folder: int, name: str, path: str, new: str, keep: bool) -> str | None:
		"""`_commit` up to the folder's fsync: `.prev` replaced, then the file; returns the old
		`.prev`'s second name under `tmp/`, to delete once the folder is synced."""
		prev = self._prev(path)
		older = None
		if keep:
			older = self._link_aside(prev)
			try:
				self._keep_current(folder, name, prev)
			except BaseException:
				_unlink_quietly(older)
				raise
		try:
			os.replace(new, name, dst_dir_fd=folder)
		except BaseException:
			if keep:
				if older is None:
					_unlink_quietly(prev)
				else:
					_rename_quietly(older, prev)
			raise
		return older

	def _link_aside(self, file: str) -> str | None:
		"""A second name under `tmp/` for `file`, or None when there is no such file."""
		aside = self._temp_path()
		try:
			os.link(file, aside)
		except FileNotFoundError:
			return None
		return aside

	def _keep_current(self, folder: int, name: str, prev: str) -> None:
		"""Make `prev` the current version: a hard link (a copy where the filesystem has none) renamed over it."""
		link = self._temp_path()
		try:
			os.link(name, link, src_dir_fd=folder)
		except OSError as e:
			if e.errno not in _NO_HARD_LINKS:
				raise
			_copy_at(folder, name, link)
		try:
			try:
				os.replace(link, prev)
			except FileNotFoundError:
				self._make_private(Path(prev).parent)
				os.replace(link, prev)
		except BaseException:
			_unlink_quietly(link)
			raise

	def _explain(self, error: OSError) -> OSError:
		if error.errno == errno.EXDEV:
			return OSError(
				errno.EXDEV,
				f"the content root {self.root} and the private root {self.private_root} (for .prev and temp "
				"files) are on different filesystems; they must share one so a write stays one rename",
			)
		return error


class _Digest:
	"""SHA-256 of `data`: at once for small data; large data is hashed on a thread once `start` is called.

	`_write_temp` starts it once the temp file's bytes are in the page cache, so the hash overlaps the
	fsync, which waits for the disk, instead of competing for a CPU with the copy or the comparison (on a
	busy 2-CPU machine that competition put 10 ms on the p99 of a 5 MB write). hashlib drops the GIL while
	it hashes. A new thread per write, not a pool: a pool's worker does not survive the fork of an RQ job.
	"""

	def __init__(self, data: bytes):
		self._data = data
		self._hex = canonical.sha256(data) if len(data) < THREADED_HASH_BYTES else None
		self._thread: threading.Thread | None = None

	def start(self) -> None:
		if self._hex is None and self._thread is None:
			self._thread = threading.Thread(target=self._run, daemon=True)
			self._thread.start()

	def _run(self) -> None:
		self._hex = canonical.sha256(self._data)

	def result(self) -> str:
		if self._thread is not None:
			self._thread.join()
		elif self._hex is None:
			self._hex = canonical.sha256(self._data)
		return self._hex


def _folder_of(path: str) -> str:
	return path.rpartition("/")[0]


def _slot_of(path: str) -> int:
	"""The lock slot of a content path: the same in every process and on every host."""
	return int.from_bytes(hashlib.blake2b(path.encode("utf-8"), digest_size=4).digest(), "big") % LOCK_SLOTS


def _check_locked(path: str, refused: dict[str, FileOperationError]) -> None:
	"""Raise why the batch could not take the lock of `path`, if it could not."""
	if (error := refused.get(path)) is not None:
		raise error


def _failed(operation: str, path: str, cause: BaseException, old_sha256: str | None = None) -> RewriteResult:
	error = cause if isinstance(cause, FileOperationError) else FileOperationError(operation, path, cause)
	return RewriteResult(path, old_sha256, error=error)


def _sync_folders(
	renamed: dict[int, list[_Staged]], fail: Callable[[_Staged, BaseException], None]
) -> list[_Staged]:
	"""fsync each folder after its renames: the files now durable; `fail` hears of the others."""
	synced = []
	for folder, items in renamed.items():
		try:
			os.fsync(folder)
		except OSError as e:
			for item in items:  # replaced, but not known to survive a power cut: the caller retries
				fail(item, e)
			continue
		synced += items
	return synced


def _same_bytes(folder: int, name: str, data: bytes) -> bool:
	"""Whether the file holds exactly `data` (the caller compared sizes), read in chunks, stopping early."""
	try:
		fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
	except OSError:
		return False
	view = memoryview(data)
	buffer = bytearray(min(READ_CHUNK, len(data)))  # one buffer, and bytearray == memoryview is a memcmp
	try:
		offset = 0
		while offset < len(data):
			count = os.readv(fd, [buffer])
			chunk = buffer if count == len(buffer) else buffer[:count]
			if not count or chunk != view[offset : offset + count]:
				return False
			offset += count
		return True
	except OSError:
		return False
	finally:
		os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)


def _sync_filesystem(folder: str) -> None:
	"""Make every file written so far on `folder`'s filesystem durable: syncfs(2), else sync(2)."""
	syncfs = getattr(_libc, "syncfs", None)
	if syncfs is None:
		os.sync()
		return
	fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
	try:
		if syncfs(fd) != 0:
			err = ctypes.get_errno()
			raise OSError(err, os.strerror(err))
	finally:
		os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
	view = memoryview(data)
	while view:
		view = view[os.write(fd, view) :]


def _read_at(folder: int, name: str) -> bytes:
	fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
	try:
		parts = []
		while chunk := os.read(fd, READ_CHUNK):
			parts.append(chunk)
		return b"".join(parts)
	finally:
		os.close(fd)


def _copy_at(folder: int, name: str, copy: str) -> None:
	"""A fsynced copy of `name` at the fresh path `copy`, 0644 like the file it copies; none if it fails."""
	source = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
	try:
		fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
		try:
			os.fchmod(fd, FILE_MODE)
			while chunk := os.read(source, READ_CHUNK):
				_write_all(fd, chunk)
			os.fsync(fd)
		except BaseException:
			os.close(fd)
			_unlink_quietly(copy)
			raise
		os.close(fd)
	finally:
		os.close(source)


def _make_folders(folder: Path, mode: int) -> None:
	"""Create `folder` and its missing parents with `mode`, whatever the process umask."""
	if folder.is_dir():
		return
	_make_folders(folder.parent, mode)
	try:
		folder.mkdir()
	except FileExistsError:  # another writer made it meanwhile
		return
	os.chmod(folder, mode)


def _fsync_dir_if_exists(folder: Path) -> None:
	try:
		fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
	except FileNotFoundError:
		return
	try:
		os.fsync(fd)
	finally:
		os.close(fd)


def _unlink_if_older(path: str, cutoff: float) -> int:
	"""Delete the regular file at `path` if it was last changed before `cutoff`; 1 if it was deleted.

	ctime, not mtime: a backup set aside a moment ago keeps the mtime of the version it holds, days old,
	but the rename that set it aside stamped its ctime.
	"""
	info = os.lstat(path)
	if not stat.S_ISREG(info.st_mode) or info.st_ctime >= cutoff:
		return 0
	os.unlink(path)
	return 1


def _rename_quietly(source: str | None, target: str) -> None:
	if source is not None:
		try:
			os.rename(source, target)
		except OSError:
			pass


def _unlink_all(paths: list[str | None]) -> None:
	for path in paths:
		_unlink_quietly(path)


def _unlink_quietly(path: str | None) -> None:
	if path is not None:
		try:
			os.unlink(path)
		except OSError:
			pass


def _line(error: OSError) -> str:
	return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
