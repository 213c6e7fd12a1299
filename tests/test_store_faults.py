"""The store under faults, with real processes and real mounts: concurrent writers and a reader, writers
killed with SIGKILL, a read-only filesystem, a full disk, the low-space guard, and a private root on another
filesystem.

Mount-based tests need root (or CAP_SYS_ADMIN); where the kernel refuses they skip and say why.
"""

import errno
import functools
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memora_storage.utils import canonical, disk, paths
from memora_storage.utils.store import ContentStore, FileOperationError

PATH = "plans/P1/manifest.json"
NAME = "manifest.json"
PRIVATE_TEMP_NAME = re.compile(r"^[0-9a-f]{16}\.tmp$")

# fork: the workers below are plain module functions and need no re-import of this test module.
CTX = multiprocessing.get_context("fork")


def payload(writer: int, seq: int, max_pad: int = 40_000) -> bytes:
	"""A complete JSON version that names its writer and sequence, with a size that varies per version."""
	pad = (seq * 7919 + writer * 104_729) % max_pad
	return canonical.dumps({"writer": writer, "seq": seq, "pad": ("ب" if writer % 2 else "a") * pad})


def identify(data: bytes, max_pad: int = 40_000) -> tuple[int, int]:
	"""(writer, seq) of a file's bytes, or AssertionError if they are not exactly one written version."""
	doc = json.loads(data)  # raises on a torn file
	writer, seq = doc["writer"], doc["seq"]
	assert data == payload(writer, seq, max_pad), f"bytes differ from version ({writer}, {seq})"
	return writer, seq


def sized(version: int, size: int) -> bytes:
	"""A JSON document of about `size` bytes."""
	return canonical.dumps({"version": version, "pad": "x" * size})


def leftovers(folder: Path) -> list[str]:
	"""Names in the public `folder` other than the content file."""
	return sorted(set(os.listdir(folder)) - {NAME})


def private_temps(store: ContentStore) -> list[str]:
	folder = store.private_root / paths.TEMP_DIR
	return sorted(os.listdir(folder)) if folder.exists() else []


# --- concurrent writers and a reader --------------------------------------------------------------------------

WRITES_PER_WRITER = 1000


def _writer(root: str, lock_dir: str, writer: int, start, count: int) -> None:
	store = ContentStore(root, lock_dir)
	start.wait(30)
	for seq in range(count):
		store.write(PATH, payload(writer, seq))


def _reader(root: str, done, results) -> None:
	"""Read the file and its `.prev` until the writers are done; report every anomaly seen."""
	target = Path(root).joinpath(*PATH.split("/"))
	prev = paths.prev_path(paths.default_private_root(root), PATH)
	seen_target = seen_prev = False
	reads, versions, problems = 0, set(), []

	def read(file: Path, seen: bool) -> tuple[int, int] | None:
		try:
			data = file.read_bytes()
		except FileNotFoundError:
			if seen:
				problems.append(f"{file.name} vanished after it had existed")
			return None
		try:
			return identify(data)
		except Exception as e:
			problems.append(f"{file.name}: {type(e).__name__}: {e} ({len(data)} bytes)")
			return None

	while not done.is_set() and len(problems) < 20:
		# `.prev` first: whatever it held then is older than what the file holds a moment later.
		before = read(prev, seen_prev)
		seen_prev = seen_prev or before is not None
		current = read(target, seen_target)
		seen_target = seen_target or current is not None
		if current:
			reads += 1
			versions.add(current)
		if before and current and before[0] == current[0] and before[1] > current[1]:
			problems.append(f".prev {before} is newer than the file {current}")
	results.put({"reads": reads, "versions": len(versions), "problems": problems})


def test_two_writer_processes_and_a_reader_never_see_a_torn_file(tmp_path: Path) -> None:
	root, lock_dir = tmp_path / "content", tmp_path / "locks"
	start, done, results = CTX.Event(), CTX.Event(), CTX.Queue()
	writers = [
		CTX.Process(target=_writer, args=(str(root), str(lock_dir), w, start, WRITES_PER_WRITER))
		for w in (0, 1)
	]
	reader = CTX.Process(target=_reader, args=(str(root), done, results))
	for proc in [reader, *writers]:
		proc.start()
	start.set()
	try:
		for proc in writers:
			proc.join(300)
	finally:
		done.set()
	report = results.get(timeout=60)
	reader.join(60)
	for proc in [reader, *writers]:
		if proc.is_alive():
			proc.kill()
	assert [proc.exitcode for proc in writers] == [0, 0]

	assert report["problems"] == []
	assert report["reads"] > 0 and report["versions"] >= 2, (
		f"the reader did not overlap the writers: {report}"
	)

	target = root / "plans" / "P1" / NAME
	last = WRITES_PER_WRITER - 1
	final = identify(target.read_bytes())
	assert final in {(0, last), (1, last)}, f"final file is {final}, not a writer's last version"
	winner, loser = final[0], 1 - final[0]
	prev = identify(paths.prev_path(paths.default_private_root(root), PATH).read_bytes())
	assert prev in {(winner, last - 1), (loser, last)}, f".prev is {prev}, not the version before {final}"
	assert leftovers(target.parent) == []
	assert private_temps(ContentStore(root, lock_dir)) == []


# --- SIGKILL at random moments ------------------------------------------------------------------------------

MID_WRITE_KILLS = 15  # kills that must land inside a write, checked like every other
MAX_KILL_RUNS = 150
BIG = 600_000  # up to ~1.2 MB per version, so a kill often lands inside a write


def _write_forever(root: str, lock_dir: str, run: int, ready) -> None:
	"""Write versions of PATH until killed; rendered beforehand, so nearly all the time is spent writing."""
	store = ContentStore(root, lock_dir)
	versions = [payload(run, seq, BIG) for seq in range(8)]
	# Two writes before the kills may land: the first run's first write keeps no `.prev` (nothing came
	# before it), and a kill during its second, before `.prev` is made, would find none.
	store.write(PATH, versions[0])
	store.write(PATH, versions[1])
	ready.set()
	seq = 2
	while True:
		store.write(PATH, versions[seq % len(versions)])
		seq += 1


def test_writer_killed_with_sigkill_leaves_a_complete_version(tmp_path: Path) -> None:
	root, lock_dir = tmp_path / "content", tmp_path / "locks"
	store = ContentStore(root, lock_dir, lock_timeout=5)
	target = root / "plans" / "P1" / NAME
	backup = paths.prev_path(store.private_root, PATH)
	seed = random.randrange(2**32)
	rng = random.Random(seed)
	killed_mid_write = 0
	runs = 0
	for run in range(MAX_KILL_RUNS):
		if killed_mid_write >= MID_WRITE_KILLS:
			break
		runs += 1
		ready = CTX.Event()
		proc = CTX.Process(target=_write_forever, args=(str(root), str(lock_dir), run, ready))
		proc.start()
		try:
			assert ready.wait(60), f"run {run}: writer never finished its first write"
			time.sleep(rng.uniform(0, 0.08))
		finally:
			os.kill(proc.pid, signal.SIGKILL)
			proc.join(30)
		assert proc.exitcode == -signal.SIGKILL

		writer, _seq = identify(target.read_bytes(), BIG)
		assert writer == run, f"seed {seed} run {run}: file holds a version of run {writer}"
		# `.prev` is replaced by a rename, never removed first: it exists whenever the kill lands.
		prev_writer, _ = identify(backup.read_bytes(), BIG)
		assert prev_writer <= run, f"seed {seed} run {run}: .prev is from a later run"
		assert leftovers(target.parent) == [], f"seed {seed} run {run}: a kill left a file in public"
		rest = private_temps(store)
		for name in rest:
			assert PRIVATE_TEMP_NAME.match(name), f"seed {seed} run {run}: unexpected file {name!r}"
		killed_mid_write += bool(rest)  # a temp file, or a link being rotated, was in flight
		for name in rest:  # count each run on its own
			(store.private_root / paths.TEMP_DIR / name).unlink()

	# A kill left a private temp name behind only if it struck between the temp file's creation and the
	# deletion of the last name set aside: inside a write. Enough of them must have, or this test did not
	# test what it says (about half the kills do on the test machine).
	assert killed_mid_write >= MID_WRITE_KILLS, (
		f"seed {seed}: only {killed_mid_write} of {runs} kills landed in the middle of a write"
	)
	# flock dies with its process: the next writer is not blocked by a killed one.
	assert store.write(PATH, b'{"after": "kills"}\n').changed
	assert store.read(PATH) == b'{"after": "kills"}\n'


# --- mounts --------------------------------------------------------------------------------------------------


def _run(*cmd: str) -> str | None:
	"""Run a command; None when it worked, else why not."""
	if not shutil.which(cmd[0]):
		return f"{cmd[0]} is not installed"
	proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
	if proc.returncode:
		said = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit status {proc.returncode}"]
		return f"`{' '.join(cmd)}` failed: {said[0]}"
	return None


def _umount(folder: Path) -> None:
	if _run("umount", str(folder)):
		_run("umount", "-l", str(folder))


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
	"""Mount a fresh tmpfs with the given options (we are root in CI); unmounted in teardown."""
	mounted: list[Path] = []

	def mount(options: str) -> Path:
		folder = tmp_path / f"mnt{len(mounted)}"
		folder.mkdir()
		why = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder))
		if why:
			pytest.skip(f"cannot mount a tmpfs here ({why}); needs root or CAP_SYS_ADMIN")
		mounted.append(folder)
		return folder

	yield mount
	for folder in reversed(mounted):
		_umount(folder)


# --- read-only filesystem ------------------------------------------------------------------------------------


@pytest.fixture(params=["ro-tmpfs", "ro-bind-mount", "immutable-folder"])
def read_only_store(request, tmp_path: Path, mount_tmpfs) -> Iterator[tuple[ContentStore, str]]:
	"""A store whose plan folder holds v1 and v2, then is made unwritable one way or another.

	chmod does not stop root, so the folder is made read-only by the kernel: a tmpfs remounted `ro`,
	a read-only bind mount, or `chattr +i`.
	"""
	method = request.param
	lock_dir = tmp_path / "locks"
	undo: list[Callable[[], object]] = []
	if method == "ro-tmpfs":
		root = mount_tmpfs("size=4m") / "content"
		store = ContentStore(root, lock_dir)
		store.write(PATH, b"v1\n")
		store.write(PATH, b"v2\n")
		why = _run("mount", "-o", "remount,ro", str(root.parent))
	elif method == "ro-bind-mount":
		source = tmp_path / "source"  # the content root and its private root, bound read-only together
		ContentStore(source / "content", lock_dir).write(PATH, b"v1\n")
		ContentStore(source / "content", lock_dir).write(PATH, b"v2\n")
		bound = tmp_path / "bound"
		bound.mkdir()
		why = _run("mount", "--bind", str(source), str(bound))
		if not why:
			undo.append(functools.partial(_umount, bound))
			why = _run("mount", "-o", "remount,bind,ro", str(bound))
		root = bound / "content"
		store = ContentStore(root, lock_dir)
	else:
		root = tmp_path / "content"
		store = ContentStore(root, lock_dir)
		store.write(PATH, b"v1\n")
		store.write(PATH, b"v2\n")
		folder = root / "plans" / "P1"
		why = _run("chattr", "+i", str(folder))
		if not why:
			undo.append(functools.partial(_run, "chattr", "-i", str(folder)))
	try:
		if why:
			pytest.skip(f"{method}: cannot make a folder read-only for root here ({why})")
		probe = root / "plans" / "P1" / "probe"
		try:
			probe.write_bytes(b"")
		except OSError:
			pass
		else:
			probe.unlink()
			pytest.skip(f"{method}: the folder is still writable after setup")
		yield store, method
	finally:
		for step in undo:
			step()


def test_read_only_folder_fails_clearly_and_keeps_old_file(read_only_store: tuple[ContentStore, str]) -> None:
	store, method = read_only_store
	folder = store.root / "plans" / "P1"
	backup = paths.prev_path(store.private_root, PATH)
	before = sorted(os.listdir(folder))
	for action in (
		lambda: store.write(PATH, b"v3\n"),
		lambda: store.remove(PATH),
		lambda: store.rollback(PATH),
	):
		with pytest.raises(FileOperationError) as caught:
			action()
		message = str(caught.value)
		assert "read-only" in message or "permission denied" in message, f"{method}: {message}"
		assert f"content file {PATH!r}" in message
		assert caught.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
		assert store.read(PATH) == b"v2\n"
		assert backup.read_bytes() == b"v1\n"
		assert sorted(os.listdir(folder)) == before
		assert private_temps(store) == []


def test_identical_write_on_a_read_only_folder_is_a_no_op(read_only_store: tuple[ContentStore, str]) -> None:
	"""Re-rendering unchanged content must not fail just because the disk cannot be written."""
	store, _method = read_only_store
	assert store.write(PATH, b"v2\n").changed is False


# --- full disk and the low-space guard ---------------------------------------------------------------------------


def test_write_bigger_than_free_space_is_refused_and_old_file_kept(mount_tmpfs) -> None:
	root = mount_tmpfs("size=1m") / "content"
	store = ContentStore(root, root.parent / "locks", min_free_percent=0)
	old = sized(1, 200_000)
	store.write(PATH, old)
	store.write("units/U1.json", b"{}\n")
	big = sized(2, 2_000_000)
	assert len(big) > disk.disk_status(root).free
	folder = root / "plans" / "P1"
	before = sorted(os.listdir(folder))

	with pytest.raises(FileOperationError) as caught:
		store.write(PATH, big)
	assert caught.value.errno == errno.ENOSPC
	assert "the disk is full" in str(caught.value)
	assert store.read(PATH) == old
	assert sorted(os.listdir(folder)) == before

	with pytest.raises(FileOperationError, match="the disk is full"):
		store.write("plans/P2/manifest.json", big)
	assert sorted(os.listdir(root / "plans")) == ["P1"]


def test_disk_full_from_the_kernel_mid_write_keeps_old_file(mount_tmpfs) -> None:
	"""Full where the guard cannot see it (no inodes left): the kernel's ENOSPC strikes after the new
	bytes are in a temp file; the old file and `.prev` must survive and the temp file must go."""
	mnt = mount_tmpfs("size=1m,nr_inodes=64")
	root = mnt / "content"
	store = ContentStore(root, mnt.parent / "locks", min_free_percent=0)
	store.write(PATH, b'{"v": 1}\n')
	store.write(PATH, b'{"v": 2}\n')
	filler = mnt / "filler"
	filler.mkdir()
	failures = []
	for free_inodes in (0, 1, 2, 3):
		for file in filler.iterdir():
			file.unlink()
		i = 0
		while os.statvfs(mnt).f_ffree > free_inodes:
			(filler / str(i)).touch()
			i += 1
		assert os.statvfs(mnt).f_ffree == free_inodes
		current = store.read(PATH)
		new = sized(3 + free_inodes, 50_000)
		try:
			store.write(PATH, new)
		except FileOperationError as e:
			failures.append(free_inodes)
			assert e.errno == errno.ENOSPC
			assert "the disk is full" in str(e)
			assert not isinstance(e.cause, disk.DiskSpaceLowError), "the kernel, not the guard, refused"
			assert store.read(PATH) == current
		else:
			assert store.read(PATH) == new
			assert paths.prev_path(store.private_root, PATH).read_bytes() == current
		assert leftovers(root / "plans" / "P1") == [], f"{free_inodes} free inodes: file left in public"
		assert private_temps(store) == [], f"{free_inodes} free inodes: temp file left"
	assert 0 in failures and 1 in failures, f"expected ENOSPC with 0 and 1 free inodes, got {failures}"


def test_guard_refuses_below_threshold_before_writing_anything(mount_tmpfs) -> None:
	root = mount_tmpfs("size=1m") / "content"
	store = ContentStore(root, root.parent / "locks")
	old = sized(1, 300_000)
	store.write(PATH, old)
	store.write(PATH, sized(2, 300_000))
	free = disk.disk_status(root).free_percent
	assert 10 < free < 90
	folder = root / "plans" / "P1"
	before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}

	strict = ContentStore(root, root.parent / "locks", min_free_percent=free + 5)
	with pytest.raises(FileOperationError) as caught:
		strict.write(PATH, b'{"small": true}\n')
	assert isinstance(caught.value.cause, disk.DiskSpaceLowError)
	assert caught.value.errno == errno.ENOSPC
	assert f"minimum {free + 5:g}%" in str(caught.value)
	assert "content generation is paused" in str(caught.value)
	assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before

	with pytest.raises(FileOperationError):
		strict.write("units/U1.json", b"{}\n")
	assert not (root / "units").exists(), "the guard let a folder be created"
	assert private_temps(store) == []

	relaxed = ContentStore(root, root.parent / "locks", min_free_percent=free - 5)
	assert relaxed.write(PATH, b'{"small": true}\n').changed
	assert store.read(PATH) == b'{"small": true}\n'


# --- the private root on another filesystem ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["tmpfs", "bind-mount"])
def test_a_private_root_on_another_filesystem_fails_clearly_and_changes_nothing(
	how: str, tmp_path: Path, mount_tmpfs
) -> None:
	"""A rename cannot cross filesystems (nor mounts, even of one filesystem): the write must refuse with
	a reason an administrator can act on, and leave the public file and its backup as they were."""
	root, lock_dir = tmp_path / "content", tmp_path / "locks"
	ContentStore(root, lock_dir).write(PATH, b"v1\n")
	ContentStore(root, lock_dir).write(PATH, b"v2\n")
	if how == "tmpfs":
		private = mount_tmpfs("size=4m") / "private"
	else:
		source = tmp_path / "elsewhere"
		source.mkdir()
		private = tmp_path / "bound"
		private.mkdir()
		why = _run("mount", "--bind", str(source), str(private))
		if why:
			pytest.skip(f"cannot bind-mount here ({why}); needs root or CAP_SYS_ADMIN")
	try:
		store = ContentStore(root, lock_dir, private_root=private)
		for action in (
			lambda: store.write(PATH, b"v3\n"),
			lambda: store.write("units/U1.json", b"new\n"),
		):
			with pytest.raises(FileOperationError) as caught:
				action()
			assert caught.value.errno == errno.EXDEV
			assert "are on different filesystems" in str(caught.value)
			assert str(private) in str(caught.value)
		assert store.read(PATH) == b"v2\n"
		assert leftovers(root / "plans" / "P1") == []
		assert not (root / "units" / "U1.json").exists()
		assert private_temps(store) == []
	finally:
		if how == "bind-mount":
			_umount(private)
