"""Disk guard: refuse a write before a nearly full disk can turn it into a corrupt file (FR-013, FR-014)."""

import errno
import os
from dataclasses import dataclass

import psutil

DEFAULT_MIN_FREE_PERCENT = 10.0


@dataclass(frozen=True)
class DiskStatus:
	path: str
	total: int
	free: int

	@property
	def free_percent(self) -> float:
		return 100.0 * self.free / self.total if self.total else 0.0

	def is_low(self, min_free_percent: float) -> bool:
		return self.free_percent < min_free_percent


class DiskSpaceLowError(OSError):
	"""Raised instead of writing when free space is below the threshold; the old file stays as it was."""

	def __init__(self, status: DiskStatus, min_free_percent: float, needed: int = 0):
		self.status = status
		self.min_free_percent = min_free_percent
		self.needed = needed
		super().__init__(
			errno.ENOSPC,
			f"only {status.free_percent:.1f}% of the disk holding {status.path} is free "
			f"(minimum {min_free_percent:g}%); content generation is paused until space is freed",
		)


def disk_status(path: str | os.PathLike) -> DiskStatus:
	"""Free space as seen by an unprivileged writer (statvfs f_bavail), on the nearest existing folder."""
	path = os.fspath(path)
	while not os.path.exists(path):
		parent = os.path.dirname(path)
		if parent == path:
			break
		path = parent
	usage = psutil.disk_usage(path)
	return DiskStatus(path=path, total=usage.used + usage.free, free=usage.free)


def ensure_space(path: str | os.PathLike, min_free_percent: float, needed: int = 0) -> DiskStatus:
	"""Raise DiskSpaceLowError when a write of `needed` bytes would start below the threshold."""
	status = disk_status(path)
	if status.is_low(min_free_percent) or status.free < needed:
		raise DiskSpaceLowError(status, min_free_percent, needed)
	return status
