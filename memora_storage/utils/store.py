"""The content store on disk: atomic writes with a `.prev` backup, deletes and rollback, one writer per path.

A reader of a content path sees, at every instant, either the whole old file or the whole new one:
new bytes go to a temporary file in the same folder, are fsynced, and are renamed over the old file.
A per-path `filelock` (flock, honoured by NFSv4) serialises writers across processes and hosts.
"""

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from memora_storage.utils import canonical, disk
from memora_storage.utils.paths import TEMP_PREFIX, TEMP_SUFFIX, prev_path, resolve, validate_relpath

FILE_MODE = 0o644  # the web server (another user) must read what we write
DIR_MODE = 0o755  # ...and enter the folders that hold it
DEFAULT_LOCK_TIMEOUT = 60.0

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


class ContentStore:
	"""The files under one content root (`sites/SITE/public/files/memora_content`)."""

	def __init__(
		self,
		root: str | os.PathLike,
		lock_dir: str | os.PathLike,
		min_free_percent: float = 0.0,
		lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
	):
		self.root = Path(root)
		self.lock_dir = Path(lock_dir)
		self.min_free_percent = min_free_percent
		self.lock_timeout = lock_timeout

	@contextmanager
	def lock(self, path: str) -> Iterator[None]:
		"""Hold the writer lock of one content path (also across hosts sharing `sites/`)."""
		self.lock_dir.mkdir(parents=True, exist_ok=True)
		name = hashlib.sha1(validate_relpath(path).encode("utf-8")).hexdigest()
		try:
			with FileLock(self.lock_dir / f"{name}.lock", timeout=self.lock_timeout):
				yield
		except Timeout as e:
			raise FileOperationError("lock", path, e)

	def write(self, path: str, data: bytes) -> WriteResult:
		"""Atomically replace the file at `path` with `data`; identical bytes leave file and `.prev` alone."""
		target = resolve(self.root, path)
		digest = canonical.sha256(data)
		with self.lock(path):
			if _same_bytes(target, data):
				return WriteResult(path, digest, len(data), changed=False)
			try:
				disk.ensure_space(target.parent, self.min_free_percent, needed=len(data))
				_make_folders(target.parent)
				tmp = _write_temp(target, data)
				try:
					if target.exists():
						_keep_previous(target)
					os.replace(tmp, target)
				except BaseException:
					_unlink_quietly(tmp)
					raise
				_fsync_dir(target.parent)
			except OSError as e:
				raise FileOperationError("write", path, e)
		return WriteResult(path, digest, len(data), changed=True)

	def read(self, path: str) -> bytes:
		"""The bytes of the file at `path`."""
		try:
			return resolve(self.root, path).read_bytes()
		except OSError as e:
			raise FileOperationError("read", path, e)

	def exists(self, path: str) -> bool:
		return resolve(self.root, path).is_file()

	def remove(self, path: str) -> bool:
		"""Delete the file at `path` and its `.prev`; True if anything was there."""
		target = resolve(self.root, path)
		removed = False
		with self.lock(path):
			for file in (target, prev_path(target)):
				try:
					file.unlink()
					removed = True
				except FileNotFoundError:
					pass
				except OSError as e:
					raise FileOperationError("delete", path, e)
			_fsync_dir_if_exists(target.parent)
		return removed

	def remove_tree(self, path: str) -> int:
		"""Delete a folder of content (a Plan's `plans/{plan}`) with everything in it; returns files removed."""
		folder = resolve(self.root, path)
		if not folder.is_dir():
			return 0
		count = sum(len(files) for _, _, files in os.walk(folder))
		try:
			shutil.rmtree(folder)
		except OSError as e:
			raise FileOperationError("delete", path, e)
		_fsync_dir_if_exists(folder.parent)
		return count

	def rollback(self, path: str) -> WriteResult:
		"""Swap the file at `path` with its `.prev` (FR-004), so the previous version is live again."""
		target = resolve(self.root, path)
		prev = prev_path(target)
		with self.lock(path):
			if not prev.is_file():
				raise FileOperationError(
					"roll back", path, FileNotFoundError(errno.ENOENT, "no previous version")
				)
			try:
				current = _snapshot(target)
				os.replace(prev, target)
				os.replace(current, prev)
				_fsync_dir(target.parent)
				data = target.read_bytes()
			except OSError as e:
				raise FileOperationError("roll back", path, e)
		return WriteResult(path, canonical.sha256(data), len(data), changed=True)


def _same_bytes(target: Path, data: bytes) -> bool:
	try:
		if target.stat().st_size != len(data):
			return False
		return target.read_bytes() == data
	except OSError:
		return False


def _temp_name(target: Path) -> str:
	return f"{TEMP_PREFIX}{target.name}."


def _write_temp(target: Path, data: bytes) -> Path:
	"""Write `data` to a fresh temp file beside `target` and fsync it; the caller renames it."""
	fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_name(target), suffix=TEMP_SUFFIX)
	try:
		with os.fdopen(fd, "wb") as f:
			f.write(data)
			f.flush()
			os.fchmod(f.fileno(), FILE_MODE)
			os.fsync(f.fileno())
	except BaseException:
		_unlink_quietly(Path(tmp))
		raise
	return Path(tmp)


def _make_folders(folder: Path) -> None:
	"""Create `folder` and its missing parents as 0755, whatever the process umask."""
	if folder.is_dir():
		return
	_make_folders(folder.parent)
	try:
		folder.mkdir()
	except FileExistsError:  # another writer made it meanwhile
		return
	os.chmod(folder, DIR_MODE)


def _snapshot(target: Path) -> Path:
	"""A temp name holding the current version of `target` (a hard link where the filesystem allows)."""
	fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_name(target), suffix=TEMP_SUFFIX)
	os.close(fd)
	os.unlink(tmp)
	try:
		os.link(target, tmp)
	except OSError:
		shutil.copy2(target, tmp)
	return Path(tmp)


def _keep_previous(target: Path) -> None:
	"""Make `NAME.prev` a complete copy of the current version without ever removing `NAME`."""
	snapshot = _snapshot(target)
	try:
		os.replace(snapshot, prev_path(target))
	except BaseException:
		_unlink_quietly(snapshot)
		raise


def _fsync_dir(folder: Path) -> None:
	fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
	try:
		os.fsync(fd)
	finally:
		os.close(fd)


def _fsync_dir_if_exists(folder: Path) -> None:
	try:
		_fsync_dir(folder)
	except FileNotFoundError:
		pass


def _unlink_quietly(path: Path) -> None:
	try:
		path.unlink()
	except OSError:
		pass
