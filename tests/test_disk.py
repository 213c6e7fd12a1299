"""The disk guard and the disk alert state machine, against a real 2 MiB filesystem filled and drained.

The filesystem is a tmpfs mounted for the test (root only). Where mounting is not permitted those tests
skip with the reason, and `test_guard_and_alert_on_the_real_disk` still runs on the real disk, with
thresholds set just above and below its real free percentage.
"""

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memora_storage.utils import canonical
from memora_storage.utils.disk import (
	ALERT_LOW,
	ALERT_OK,
	EVENT_LOW,
	EVENT_RECOVERED,
	DiskSpaceLowError,
	DiskStatus,
	check_disk_alert,
	disk_status,
	ensure_space,
)
from memora_storage.utils.store import ContentStore, FileOperationError

FS_SIZE = 2 * 1024 * 1024
PAGE = 4096  # tmpfs allocates whole pages


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
	"""A real 2 MiB tmpfs, unmounted afterwards; skipped where this process may not mount."""
	mount_point = tmp_path / "small_fs"
	mount_point.mkdir()
	if os.geteuid() != 0:
		pytest.skip("mounting a 2 MiB tmpfs needs root; the real-disk test covers the guard instead")
	mounted = subprocess.run(
		["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", str(mount_point)],
		capture_output=True,
		text=True,
	)
	if mounted.returncode != 0:
		pytest.skip(
			f"tmpfs mount not permitted here ({mounted.stderr.strip()}); the real-disk test covers the guard"
		)
	try:
		yield mount_point
	finally:
		subprocess.run(["umount", str(mount_point)], check=True)


def set_free_percent(folder: Path, percent: float) -> DiskStatus:
	"""Grow or shrink a filler file with real bytes until `percent` of the filesystem is free."""
	filler = folder / "filler.bin"
	filler.touch()
	status = disk_status(folder)
	change = status.free - int(status.total * percent / 100)
	change = (change // PAGE + (1 if change > 0 else 0)) * PAGE  # err on the full side
	size = filler.stat().st_size
	if change > 0:
		with open(filler, "ab") as f:
			f.write(b"\xa5" * change)
	else:
		os.truncate(filler, max(0, size + change))
	status = disk_status(folder)
	assert abs(status.free_percent - percent) < 0.5, status
	return status


def test_disk_status_reads_the_real_filesystem(small_fs: Path) -> None:
	status = disk_status(small_fs)
	fs = os.statvfs(small_fs)
	assert status.total == fs.f_blocks * fs.f_frsize == FS_SIZE
	assert status.free == fs.f_bavail * fs.f_frsize
	# A folder not created yet is measured on the nearest one that exists.
	assert disk_status(small_fs / "content" / "plans" / "P1").path == str(small_fs)


def test_a_nearly_full_disk_pauses_writes_and_keeps_the_old_file(small_fs: Path) -> None:
	store = ContentStore(small_fs / "content", small_fs / "locks", min_free_percent=10)
	first = canonical.dumps({"name": "P1", "version": 1})
	store.write("plans/P1/manifest.json", first)

	status = set_free_percent(small_fs, 5)
	assert status.is_low(10)
	with pytest.raises(DiskSpaceLowError) as raised:
		ensure_space(small_fs, 10)
	assert raised.value.errno == errno.ENOSPC
	assert raised.value.status.free == status.free
	assert "content generation is paused" in str(raised.value)
	with pytest.raises(FileOperationError):
		store.write("plans/P1/manifest.json", canonical.dumps({"name": "P1", "version": 2}))
	assert store.read("plans/P1/manifest.json") == first
	assert sorted(os.listdir(small_fs / "content" / "plans" / "P1")) == ["manifest.json"]  # no temp left

	set_free_percent(small_fs, 30)
	assert ensure_space(small_fs, 10).free_percent >= 29.5
	assert store.write("plans/P1/manifest.json", canonical.dumps({"name": "P1", "version": 2})).changed


def test_a_write_bigger_than_the_free_space_is_refused(small_fs: Path) -> None:
	status = set_free_percent(small_fs, 40)
	assert ensure_space(small_fs, 10, needed=status.free - PAGE) == disk_status(small_fs)
	with pytest.raises(DiskSpaceLowError) as raised:
		ensure_space(small_fs, 10, needed=status.free + 1)
	assert raised.value.needed == status.free + 1


def test_alerts_follow_a_real_disk_filling_and_draining(small_fs: Path) -> None:
	"""One alert per episode of low space, one recovery notice, silence while it hovers in between."""
	state = None
	events = []
	paused = []
	for percent in (50, 20, 9, 5, 9.5, 11, 9, 11.5, 12.5, 30, 11, 9.5, 9, 13):
		status = set_free_percent(small_fs, percent)
		alert = check_disk_alert(state, status, min_free_percent=10, hysteresis=2)
		state = alert.state
		events.append(alert.event)
		try:
			ensure_space(small_fs, 10)
			paused.append(False)
		except DiskSpaceLowError:
			paused.append(True)
	assert events == [
		None,
		None,
		EVENT_LOW,
		None,
		None,
		None,
		None,
		None,
		EVENT_RECOVERED,
		None,
		None,
		EVENT_LOW,
		None,
		EVENT_RECOVERED,
	]
	# Writes are refused exactly below the threshold, whatever the alert state says.
	assert paused == [
		False,
		False,
		True,
		True,
		True,
		False,
		True,
		False,
		False,
		False,
		False,
		True,
		True,
		False,
	]
	assert state == ALERT_OK


def test_guard_and_alert_on_the_real_disk(tmp_path: Path) -> None:
	"""Runs everywhere (also where tmpfs cannot be mounted): thresholds around the real free percentage."""
	status = disk_status(tmp_path)
	assert 0 < status.free <= status.total
	above = min(status.free_percent + 1, 100)
	below = max(status.free_percent - 5, 0)
	with pytest.raises(DiskSpaceLowError):
		ensure_space(tmp_path, above)
	assert ensure_space(tmp_path, below).total == status.total
	low = check_disk_alert(ALERT_OK, disk_status(tmp_path), min_free_percent=above)
	assert (low.state, low.event) == (ALERT_LOW, EVENT_LOW)
	back = check_disk_alert(ALERT_LOW, disk_status(tmp_path), min_free_percent=below, hysteresis=0)
	assert (back.state, back.event) == (ALERT_OK, EVENT_RECOVERED)


# --- the state machine on its own -----------------------------------------------------------------------------


def at(percent: float) -> DiskStatus:
	return DiskStatus(path="/srv", total=10_000, free=int(percent * 100))


@pytest.mark.parametrize(
	"previous, percent, expected",
	[
		(ALERT_OK, 50, (ALERT_OK, None)),
		(ALERT_OK, 10, (ALERT_OK, None)),  # at the threshold is not below it, as in ensure_space
		(ALERT_OK, 9.99, (ALERT_LOW, EVENT_LOW)),
		(ALERT_LOW, 9.99, (ALERT_LOW, None)),
		(ALERT_LOW, 11.99, (ALERT_LOW, None)),
		(ALERT_LOW, 12, (ALERT_OK, EVENT_RECOVERED)),
		(None, 5, (ALERT_LOW, EVENT_LOW)),  # nothing stored yet: a low disk still alerts once
		(None, 50, (ALERT_OK, None)),  # ...and a healthy one sends no "recovered"
		("garbage", 5, (ALERT_LOW, EVENT_LOW)),
	],
)
def test_transitions(previous: str | None, percent: float, expected: tuple) -> None:
	alert = check_disk_alert(previous, at(percent))
	assert (alert.state, alert.event) == expected


def test_hovering_around_the_threshold_alerts_once() -> None:
	state = ALERT_OK
	events = []
	for percent in (10.5, 9.9, 10.1, 9.8, 10.4, 9.7, 11.0, 11.9, 9.5, 11.99, 12.0, 11.0, 10.0, 10.5, 9.99):
		alert = check_disk_alert(state, at(percent), min_free_percent=10, hysteresis=2)
		state = alert.state
		events.append(alert.event)
	assert [e for e in events if e] == [EVENT_LOW, EVENT_RECOVERED, EVENT_LOW]
	assert events.index(EVENT_RECOVERED) == 10


def test_hysteresis_zero_and_custom_threshold() -> None:
	assert check_disk_alert(ALERT_LOW, at(10), min_free_percent=10, hysteresis=0).event == EVENT_RECOVERED
	assert check_disk_alert(ALERT_OK, at(14), min_free_percent=15).event == EVENT_LOW
	assert check_disk_alert(ALERT_LOW, at(16.5), min_free_percent=15).event is None
	with pytest.raises(ValueError):
		check_disk_alert(ALERT_OK, at(50), hysteresis=-1)


def test_empty_filesystem_figures_count_as_low() -> None:
	assert check_disk_alert(ALERT_OK, DiskStatus(path="/x", total=0, free=0)).event == EVENT_LOW


def test_alert_to_dict_is_small_and_json_ready() -> None:
	alert = check_disk_alert(ALERT_OK, at(7.5))
	data = json.loads(json.dumps(alert.to_dict()))
	assert data == {
		"state": "low",
		"event": "low",
		"path": "/srv",
		"free_percent": 7.5,
		"free": 750,
		"total": 10_000,
		"min_free_percent": 10.0,
		"recover_free_percent": 12.0,
	}
	# The state is a plain string: persist it as is and pass it back on the next check.
	assert check_disk_alert(data["state"], at(7.5)).event is None
