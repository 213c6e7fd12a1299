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


# Disk alerts (FR-013, SC-007): one alert when free space drops below the threshold, one notice when it
# is back, and silence in between. Recovery needs `hysteresis` points more than the threshold, so a disk
# hovering around 10% does not flap between alert and recovery every minute. Writes are still refused by
# `ensure_space` exactly at the threshold; only the messages are hysteretic.

ALERT_OK = "ok"
ALERT_LOW = "low"
EVENT_LOW = "low"
EVENT_RECOVERED = "recovered"
DEFAULT_HYSTERESIS = 2.0


@dataclass(frozen=True)
class DiskAlert:
	"""One disk check's outcome: the state to persist for the next check, and what to tell administrators."""

	state: str
	event: str | None
	status: DiskStatus
	min_free_percent: float
	recover_free_percent: float

	def to_dict(self) -> dict:
		"""JSON-ready figures for the notification text and the log."""
		return {
			"state": self.state,
			"event": self.event,
			"path": self.status.path,
			"free_percent": round(self.status.free_percent, 2),
			"free": self.status.free,
			"total": self.status.total,
			"min_free_percent": self.min_free_percent,
			"recover_free_percent": self.recover_free_percent,
		}


def check_disk_alert(
	previous: str | None,
	status: DiskStatus,
	min_free_percent: float = DEFAULT_MIN_FREE_PERCENT,
	hysteresis: float = DEFAULT_HYSTERESIS,
) -> DiskAlert:
	"""Next alert state from the persisted one (`"ok"`, `"low"`, or None when nothing is stored yet).

	Event `"low"`: free space fell below `min_free_percent`, alert once. Event `"recovered"`: it is back
	to at least `min_free_percent + hysteresis`, send the all-clear. None: nothing to send. A missing or
	unknown previous state counts as ok, so a disk already low at the first check still alerts once.
	"""
	if hysteresis < 0:
		raise ValueError(f"hysteresis must not be negative, got {hysteresis}")
	recover_at = min_free_percent + hysteresis
	free = status.free_percent
	if previous == ALERT_LOW:
		state, event = (ALERT_OK, EVENT_RECOVERED) if free >= recover_at else (ALERT_LOW, None)
	else:
		state, event = (ALERT_LOW, EVENT_LOW) if status.is_low(min_free_percent) else (ALERT_OK, None)
	return DiskAlert(state, event, status, min_free_percent, recover_at)
