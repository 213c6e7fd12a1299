"""`ContentStore.write_many` on a real directory: the files of one transaction written with one sync, what
it changes and leaves alone, one file's failure among others, and a writer killed with SIGKILL at random
moments of a batch."""

import errno
import os
import random
import time
from pathlib import Path

import pytest
from test_store_batch import CTX, clear_temps, killed_writers, temps, writes_denied

from memora_storage.utils import canonical, disk, paths
from memora_storage.utils import store as store_module
from memora_storage.utils.store import ContentStore, FileOperationError, WriteResult


def unit_path(n: int) -> str:
	return f"units/U{n:04}.json"


def unit(n: int, edition: str) -> bytes:
	return canonical.dumps(
		{"doctype": "Unit", "name": f"U{n:04}", "edition": edition, "body": "x" * (n % 97)}
	)


def test_new_changed_and_identical_files_in_one_call(content_store: ContentStore) -> None:
	for n in range(3):
		content_store.write(unit_path(n), unit(n, "v1"))
	unchanged = os.stat(paths.file_path(content_store.root, unit_path(0)))
	files = {unit_path(0): unit(0, "v1"), unit_path(1): unit(1, "v2"), "plans/P/manifest.json": b"{}\n"}
	files[unit_path(2)] = unit(2, "v2")

	results = content_store.write_many(files)

	assert [r.path for r in results] == list(files)
	by_path = {r.path: r for r in results}
	assert all(isinstance(r, WriteResult) for r in results)
	assert not by_path[unit_path(0)].changed
	assert os.stat(paths.file_path(content_store.root, unit_path(0))).st_ino == unchanged.st_ino
	for path, data in files.items():
		assert content_store.read(path) == data
		assert (by_path[path].sha256, by_path[path].size) == (canonical.sha256(data), len(data))
	for n in (1, 2):  # the version before the write is the one to roll back to, as after `write`
		assert by_path[unit_path(n)].changed
		assert paths.prev_path(content_store.private_root, unit_path(n)).read_bytes() == unit(n, "v1")
		assert os.stat(paths.file_path(content_store.root, unit_path(n))).st_mode & 0o777 == 0o644
	assert not paths.prev_path(content_store.private_root, "plans/P/manifest.json").exists()
	assert not paths.prev_path(content_store.private_root, unit_path(0)).exists()
	assert content_store.rollback(unit_path(1)).changed and content_store.read(unit_path(1)) == unit(1, "v1")
	assert temps(content_store) == []


def test_one_sync_and_one_fsync_per_folder_per_batch(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	for n in range(4):
		content_store.write(unit_path(n), unit(n, "v1"))
	syncs, fsyncs = [], []
	real_sync, real_fsync = store_module._sync_filesystem, os.fsync
	monkeypatch.setattr(store_module, "_sync_filesystem", lambda folder: syncs.append(real_sync(folder)))
	monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(real_fsync(fd)))
	files = {unit_path(n): unit(n, "v2") for n in range(7)}
	files.update({f"plans/P/subjects/S{n}.json": b"[]\n" for n in range(3)})

	results = content_store.write_many(files, batch_size=5)

	assert all(r.changed for r in results)
	assert len(syncs) == 2  # two batches
	assert len(fsyncs) == 3  # units/ in each batch, plans/P/subjects/ in the second
	with pytest.raises(ValueError, match="batch_size"):
		content_store.write_many(files, batch_size=0)
	syncs.clear()
	fsyncs.clear()
	# One file alone: its own fsync is cheaper than a sync of the whole filesystem.
	assert content_store.write_many({unit_path(0): unit(0, "v3")})[0].changed
	assert (len(syncs), len(fsyncs)) == (0, 2)  # the temp file, then its folder


def test_a_new_folder_is_looked_for_and_made_once_per_batch(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	"""An import's Subject brings a folder of a thousand new Units: resolving that missing folder once
	per file cost a realpath (a lstat per component) each, half of a 500-Unit insert's writes."""
	resolved = []
	real_file_path = store_module.file_path
	monkeypatch.setattr(
		store_module, "file_path", lambda root, path: resolved.append(path) or real_file_path(root, path)
	)
	files = {f"plans/P/subjects/S/units/U{n}.json": unit(n, "v1") for n in range(50)}
	files["plans/P/subjects/S.json"] = b"[]\n"

	results = content_store.write_many(files)

	# Each missing folder: once found missing, once made.
	assert len(resolved) == 4, resolved
	assert all(r.changed for r in results)
	assert all(content_store.read(path) == data for path, data in files.items())


def test_a_symlinked_folder_pointing_outside_fails_each_of_its_files(
	tmp_path: Path, content_store: ContentStore
) -> None:
	outside = tmp_path / "outside"
	(outside / "P").mkdir(parents=True)
	content_store.root.mkdir(parents=True, exist_ok=True)
	(content_store.root / "plans").symlink_to(outside, target_is_directory=True)
	files = {f"plans/{plan}/subjects/S{n}.json": b"[]\n" for plan in ("P", "Q") for n in range(3)}
	files[unit_path(1)] = unit(1, "v1")

	results = content_store.write_many(files)

	for result in results[:-1]:
		assert isinstance(result, FileOperationError) and "outside the content root" in str(result)
	assert results[-1].changed and content_store.read(unit_path(1)) == unit(1, "v1")
	assert [p.name for p in outside.rglob("*")] == ["P"]
	assert temps(content_store) == []


def _hold_lock(root: str, lock_dir: str, path: str, held, release) -> None:
	with ContentStore(root, lock_dir).lock(path):
		held.set()
		release.wait(30)


def test_a_file_whose_lock_is_held_fails_alone(content_store: ContentStore) -> None:
	held, release = CTX.Event(), CTX.Event()
	holder = CTX.Process(
		target=_hold_lock,
		args=(str(content_store.root), str(content_store.lock_dir), unit_path(1), held, release),
	)
	holder.start()
	try:
		assert held.wait(30)
		waiting = ContentStore(
			content_store.root,
			content_store.lock_dir,
			lock_timeout=0.2,
			private_root=content_store.private_root,
		)
		files = {unit_path(n): unit(n, "v1") for n in range(3)}
		files["plans/P/manifest.json"] = b"{}\n"
		assert len({store_module._slot_of(path) for path in files}) == 4
		results = waiting.write_many(files)
	finally:
		release.set()
		holder.join(30)
	locked = results[1]
	assert isinstance(locked, FileOperationError) and "held the lock" in str(locked)
	assert locked.operation == "write" and unit_path(1) in str(locked)
	assert not content_store.exists(unit_path(1))
	for path, result in zip(files, results, strict=True):
		if path != unit_path(1):
			assert result.changed and content_store.read(path) == files[path]
	assert temps(content_store) == []


class _SlowFileLock(store_module.FileLock):
	"""Holds each lock a moment before the next is asked for, as a lock on NFS may take (a round trip)."""

	def acquire(self, *args, **kwargs):
		proxy = super().acquire(*args, **kwargs)
		time.sleep(0.002)
		return proxy


def _write_batches(root: str, lock_dir: str, private: str, batches: list[list[str]], rounds: int) -> None:
	store_module.FileLock = _SlowFileLock  # in this child process only
	store = ContentStore(root, lock_dir, lock_timeout=5, private_root=private)
	for n in range(rounds):
		for batch in batches:
			results = store.write_many({path: f"{n}\n".encode() for path in batch})
			assert all(isinstance(r, WriteResult) for r in results), results


def test_batches_locking_the_same_paths_in_any_order_never_deadlock(content_store: ContentStore) -> None:
	"""`write_many` writes in the order given: a batch locking its paths in that order would hold
	`a.json`'s lock and wait for `b.json`'s while the other holds `b.json`'s and waits for `a.json`'s."""
	batches = [["a/b.json", "a/b/c.json"], ["a/b/c.json", "a/b.json"]]
	assert store_module._slot_of(batches[0][0]) != store_module._slot_of(batches[0][1])
	writers = [
		CTX.Process(
			target=_write_batches,
			args=(
				str(content_store.root),
				str(content_store.lock_dir),
				str(content_store.private_root),
				order,
				100,
			),
		)
		for order in (batches, batches[::-1])
	]
	for writer in writers:
		writer.start()
	for writer in writers:
		writer.join(120)
	assert [writer.exitcode for writer in writers] == [0, 0]
	assert content_store.read("a/b/c.json") == b"99\n"


def test_a_file_whose_folder_denies_the_write_fails_alone(content_store: ContentStore) -> None:
	content_store.write("plans/Locked/manifest.json", b"{}\n")
	files = {unit_path(n): unit(n, "v1") for n in range(3)}
	files["plans/Locked/manifest.json"] = b'{"a": 1}\n'
	with writes_denied(content_store.root / "plans" / "Locked"):
		results = {r.path: r for r in content_store.write_many(files)}
	failed = results["plans/Locked/manifest.json"]
	assert isinstance(failed, FileOperationError) and failed.errno in (errno.EACCES, errno.EPERM)
	assert "plans/Locked/manifest.json" in str(failed)
	assert content_store.read("plans/Locked/manifest.json") == b"{}\n"
	assert all(content_store.read(unit_path(n)) == unit(n, "v1") for n in range(3))
	assert temps(content_store) == []


def test_a_bad_path_fails_alone(content_store: ContentStore) -> None:
	results = content_store.write_many({"../escape.json": b"{}\n", unit_path(1): unit(1, "v1")})
	assert isinstance(results[0], FileOperationError) and results[0].path == "../escape.json"
	assert results[1].changed and content_store.read(unit_path(1)) == unit(1, "v1")


def test_a_batch_the_disk_guard_refuses_changes_nothing(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	content_store.write(unit_path(0), unit(0, "v1"))
	status = disk.DiskStatus(str(content_store.root), total=1000, free=10)

	def full(root, pct, needed=0):
		raise disk.DiskSpaceLowError(status, pct, needed)

	monkeypatch.setattr(disk, "ensure_space", full)
	files = {unit_path(n): unit(n, "v2") for n in range(3)}
	results = content_store.write_many({**files, "plans/New/manifest.json": b"{}\n"})
	assert len(results) == 4
	assert all(isinstance(r, FileOperationError) and "the disk is full" in str(r) for r in results)
	assert content_store.read(unit_path(0)) == unit(0, "v1")
	assert not content_store.exists(unit_path(1))
	assert not (content_store.root / "plans").exists()  # no folder made for a file never written
	assert temps(content_store) == []


def test_a_failed_sync_replaces_nothing(content_store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
	content_store.write(unit_path(0), unit(0, "v1"))

	def broken(folder: str) -> None:
		raise OSError(errno.EIO, "Input/output error")

	monkeypatch.setattr(store_module, "_sync_filesystem", broken)
	results = content_store.write_many({unit_path(n): unit(n, "v2") for n in range(3)})
	assert all(isinstance(r, FileOperationError) and r.errno == errno.EIO for r in results)
	assert content_store.read(unit_path(0)) == unit(0, "v1")
	assert temps(content_store) == []


def test_a_concurrent_write_waits_for_the_batch(tmp_path: Path) -> None:
	"""The batch holds every path's lock until its folders are synced."""
	store = ContentStore(tmp_path / "content", tmp_path / "locks")
	other = ContentStore(store.root, store.lock_dir, lock_timeout=0.05)
	blocked = []
	real = store_module._sync_filesystem

	def sync_and_try(folder: str) -> None:
		real(folder)
		try:
			other.write(unit_path(0), b"{}\n")
		except OSError as e:
			blocked.append(str(e))

	store_module._sync_filesystem = sync_and_try
	try:
		store.write_many({unit_path(n): unit(n, "v1") for n in range(3)})
	finally:
		store_module._sync_filesystem = real
	assert len(blocked) == 1 and "held the lock" in blocked[0]
	assert other.write(unit_path(0), b"{}\n").changed  # released once returned


# --- SIGKILL at random moments ------------------------------------------------------------------------------

KILL_FILES = 300  # one batch of each edition, so a kill between its first rename and its last leaves a mix
MID_BATCH_KILLS = 15
EDITIONS = ("a", "b")


def _save_forever(root: str, lock_dir: str, private: str, ready) -> None:
	"""Write every file as edition a, then b, one batch each, until killed."""
	store = ContentStore(root, lock_dir, private_root=private)
	ready.set()
	while True:
		for edition in EDITIONS:
			store.write_many(
				{unit_path(n): unit(n, edition) for n in range(KILL_FILES)}, batch_size=KILL_FILES
			)


def test_a_batch_writer_killed_with_sigkill_leaves_every_file_and_prev_whole(tmp_path: Path) -> None:
	store = ContentStore(tmp_path / "content", tmp_path / "locks")
	for edition in EDITIONS:
		started = time.monotonic()
		store.write_many({unit_path(n): unit(n, edition) for n in range(KILL_FILES)})
		batch_s = time.monotonic() - started  # the second batch keeps `.prev`s, as the child's do
	versions = {unit_path(n): {unit(n, edition) for edition in EDITIONS} for n in range(KILL_FILES)}
	seed = random.randrange(2**32)
	rng = random.Random(seed)
	mid_batch = runs = 0
	# A busy machine makes a batch slow: the kill follows the batch's own time.
	for runs in killed_writers(store, _save_forever, lambda: rng.uniform(0.005, 2 * batch_s), seed):
		after = {path: store.read(path) for path in versions}
		for path, data in after.items():
			assert data in versions[path], f"seed {seed} run {runs}: {path} holds neither version"
			# `.prev` is replaced by a rename too: always a whole version, never missing once written.
			backup = paths.prev_path(store.private_root, path).read_bytes()
			assert backup in versions[path], f"seed {seed} run {runs}: {path}'s .prev is torn or missing"
		assert sorted(os.listdir(store.root / "units")) == sorted(p.rpartition("/")[2] for p in versions)
		mixed = len({b'"a"' in data for data in after.values()}) > 1  # between first and last rename
		mid_batch += mixed or bool(clear_temps(store, f"seed {seed} run {runs}"))
		if mid_batch >= MID_BATCH_KILLS:
			break

	assert mid_batch >= MID_BATCH_KILLS, f"seed {seed}: only {mid_batch} of {runs} kills landed mid-batch"
	# flock died with the child: the next batch is not blocked, and finishes the job.
	results = store.write_many({unit_path(n): unit(n, "c") for n in range(KILL_FILES)})
	assert all(isinstance(r, WriteResult) for r in results)
	assert all(store.read(unit_path(n)) == unit(n, "c") for n in range(KILL_FILES))


def test_files_are_renamed_in_the_order_given(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	"""Children first: a file listing them never points at one that is not there yet."""
	content_store.write("plans/P/manifest.json", b"{}\n")
	renamed = []
	real_replace = os.replace

	def replace(source, target, *args, **kwargs):
		if kwargs.get("dst_dir_fd") is not None:
			renamed.append(target)
		return real_replace(source, target, *args, **kwargs)

	monkeypatch.setattr(os, "replace", replace)
	files = {unit_path(2): unit(2, "v1"), unit_path(1): unit(1, "v1")}
	files["plans/P/subjects/S1.json"] = b'{"units": 2}\n'
	files["plans/P/manifest.json"] = b'{"subjects": 1}\n'
	results = content_store.write_many(files)
	assert [r.path for r in results] == list(files)
	assert renamed == [path.rpartition("/")[2] for path in files]


def test_every_batch_answers_for_its_files(content_store: ContentStore) -> None:
	"""Batches of one file and of two: each file's result comes back, in the order given."""
	files = {unit_path(n): unit(n, "v1") for n in (4, 0, 3, 1, 2)}
	for batch_size in (1, 2):
		results = content_store.write_many(files, batch_size=batch_size)
		assert [r.path for r in results] == list(files)
		assert [r.changed for r in results] == [batch_size == 1] * len(files)
	assert all(content_store.read(path) == data for path, data in files.items())


def _failing_on(monkeypatch: pytest.MonkeyPatch, name: str, call: int, error: int) -> None:
	"""os.`name` raises `error` on its `call`-th call with a `dst_dir_fd` or none, the others run."""
	real = getattr(os, name)
	calls = []

	def failing(*args, **kwargs):
		calls.append(args)
		if len(calls) == call:
			raise OSError(error, os.strerror(error))
		return real(*args, **kwargs)

	monkeypatch.setattr(os, name, failing)


def test_a_temp_file_that_cannot_be_written_fails_alone(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	content_store.write(unit_path(1), unit(1, "v1"))
	files = {unit_path(n): unit(n, "v2") for n in range(4)}
	real_write_temp = ContentStore._write_temp
	calls = []

	def write_temp(self, data, digest, sync=True):
		calls.append(data)
		if len(calls) == 2:  # unit 1's, the second in the order given
			raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
		return real_write_temp(self, data, digest, sync)

	monkeypatch.setattr(ContentStore, "_write_temp", write_temp)
	results = content_store.write_many(files)
	failed = results[1]
	assert isinstance(failed, FileOperationError)
	assert (failed.operation, failed.path, failed.errno) == ("write", unit_path(1), errno.ENOSPC)
	assert [r.changed for n, r in enumerate(results) if n != 1] == [True, True, True]
	assert [content_store.read(unit_path(n)) == unit(n, "v2") for n in range(4)] == [True, False, True, True]
	assert temps(content_store) == []


def test_a_file_that_cannot_be_renamed_fails_alone(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	files = {unit_path(n): unit(n, "v1") for n in range(4)}
	_failing_on(monkeypatch, "replace", 2, errno.EIO)
	results = content_store.write_many(files)
	assert isinstance(results[1], FileOperationError)
	assert (results[1].operation, results[1].errno) == ("write", errno.EIO)
	assert [r.changed for n, r in enumerate(results) if n != 1] == [True, True, True]
	assert not content_store.exists(unit_path(1))
	assert temps(content_store) == []


def test_a_folder_that_cannot_be_synced_fails_its_files_only(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	"""Its files are renamed but not known to be durable: the caller hears they failed, and retries."""
	files = {unit_path(n): unit(n, "v1") for n in range(2)}
	files["plans/P/manifest.json"] = b"{}\n"
	_failing_on(monkeypatch, "fsync", 1, errno.EIO)  # the first folder synced: units/
	results = content_store.write_many(files)
	assert [type(r) for r in results] == [FileOperationError, FileOperationError, WriteResult]
	assert [(r.operation, r.path, r.errno) for r in results[:2]] == [
		("write", unit_path(0), errno.EIO),
		("write", unit_path(1), errno.EIO),
	]
	assert results[2].changed


def test_a_folder_where_the_file_should_be_fails_with_eisdir(content_store: ContentStore) -> None:
	(content_store.root / unit_path(0)).mkdir(parents=True)
	for write in (
		lambda: content_store.write_many({unit_path(0): b"{}\n"})[0],
		lambda: content_store.rewrite_many([unit_path(0)], lambda path, data: b"{}\n")[0].error,
	):
		failed = write()
		assert isinstance(failed, FileOperationError) and failed.errno == errno.EISDIR
		assert "not a regular file" in str(failed)
	assert (content_store.root / unit_path(0)).is_dir()


def test_a_link_to_a_file_in_the_root_is_compared_through(content_store: ContentStore) -> None:
	"""A symlink inside the root is followed to judge whether the bytes changed; one out of it is refused."""
	content_store.write(unit_path(1), unit(1, "v1"))
	link = content_store.root / unit_path(0)
	link.symlink_to(paths.file_path(content_store.root, unit_path(1)).name)
	result = content_store.write_many({unit_path(0): unit(1, "v1")})[0]
	assert isinstance(result, WriteResult) and not result.changed and link.is_symlink()
	outside = content_store.root.parent / "outside.json"
	outside.write_bytes(b"{}\n")
	link.unlink()
	link.symlink_to(outside)
	refused = content_store.write_many({unit_path(0): b"{}\n"})[0]
	assert isinstance(refused, FileOperationError) and "outside the content root" in str(refused)
	assert outside.read_bytes() == b"{}\n"


def test_a_staging_failure_names_the_operation(content_store: ContentStore) -> None:
	assert content_store.write_many({"../x.json": b"{}\n"})[0].operation == "write"
	failed = content_store.rewrite_many(["../x.json"], lambda path, data: data)[0]
	assert failed.error is not None and failed.error.operation == "rewrite"
