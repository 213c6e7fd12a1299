"""`ContentStore.rewrite_many` and `rewrite_batches` on a real directory: what a batch changes and what it
leaves alone, one file's failure among others, the writer locks against a concurrent `write` from another
process, and a batch writer killed with SIGKILL at random moments."""

import errno
import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from memora_storage.utils import canonical, disk, links, paths
from memora_storage.utils import store as store_module
from memora_storage.utils.store import ContentStore

SITE = "https://site.example"
LOCAL = f"{SITE}/files/memora_content"
CDN = "https://cdn.example.com/memora"
BASES = links.Bases([LOCAL, CDN])
CTX = multiprocessing.get_context("fork")  # the workers are module functions: no re-import needed


def subject(base: str, n: int, edition: str = "v1") -> bytes:
	"""A Subject file listing two units under `base`; `edition` stands for its content version."""
	units = [f"U{n}a", f"U{n}b"]
	return canonical.dumps(
		{
			"doctype": "Subject",
			"edition": edition,
			"name": f"S{n}",
			"units": [{"name": u, "title": u, "url": f"{base}/units/{u}.json"} for u in units],
		}
	)


def subject_path(n: int) -> str:
	return f"plans/P/subjects/S{n}.json"


def populate(store: ContentStore, count: int) -> dict[str, bytes]:
	"""`count` subjects linking to the CDN, each written twice so its `.prev` is the first edition."""
	files = {}
	for n in range(count):
		store.write(subject_path(n), subject(CDN, n, "v1"))
		files[subject_path(n)] = subject(CDN, n, "v2")
		store.write(subject_path(n), files[subject_path(n)])
	return files


def to_local(path: str, data: bytes) -> bytes | None:
	return links.rewrite(data, BASES, lambda child: f"{LOCAL}/{child}")


def to_cdn(path: str, data: bytes) -> bytes | None:
	return links.rewrite(data, BASES, lambda child: f"{CDN}/{child}")


def temps(store: ContentStore) -> list[str]:
	folder = store.private_root / paths.TEMP_DIR
	return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_batch_rewrites_links_and_leaves_prev_and_unchanged_files_alone(
	content_store: ContentStore,
) -> None:
	files = populate(content_store, 5)
	already = subject_path(0)
	content_store.write(already, subject(LOCAL, 0, "v2"))
	unchanged_stat = os.stat(paths.file_path(content_store.root, already))
	missing = "plans/P/subjects/missing.json"
	before_commit = []

	def record(changed: list) -> None:
		# The new bytes are durable, but no file has been replaced yet.
		before_commit.extend((r.path, content_store.read(r.path) == files[r.path]) for r in changed)

	results = content_store.rewrite_many(
		[*files, missing, "plans/Q/gone.json"], to_local, before_commit=record
	)

	assert [r.path for r in results] == sorted([*files, missing, "plans/Q/gone.json"])
	by_path = {r.path: r for r in results}
	assert by_path[missing].missing and by_path["plans/Q/gone.json"].missing  # no file, or no folder
	assert by_path[missing].error is None and not by_path[missing].changed
	same = by_path[already]
	assert not same.changed and same.old_sha256 == same.sha256 == canonical.sha256(subject(LOCAL, 0, "v2"))
	assert os.stat(paths.file_path(content_store.root, already)).st_mtime_ns == unchanged_stat.st_mtime_ns
	assert os.stat(paths.file_path(content_store.root, already)).st_ino == unchanged_stat.st_ino
	changed = [p for p in files if p != already]
	assert sorted(before_commit) == [(p, True) for p in sorted(changed)]
	for n in range(1, 5):
		path = subject_path(n)
		result, new = by_path[path], content_store.read(path)
		assert new == subject(LOCAL, n, "v2")
		assert (result.changed, result.error) == (True, None)
		assert (result.old_sha256, result.sha256, result.size) == (
			canonical.sha256(files[path]),
			canonical.sha256(new),
			len(new),
		)
		# A relink changes links, not content: the version to roll back to is still the first edition.
		assert paths.prev_path(content_store.private_root, path).read_bytes() == subject(CDN, n, "v1")
		assert os.stat(paths.file_path(content_store.root, path)).st_mode & 0o777 == 0o644
	assert temps(content_store) == []
	assert sorted(os.listdir(content_store.root / "plans" / "P" / "subjects")) == sorted(
		p.rpartition("/")[2] for p in files
	)


@contextmanager
def writes_denied(folder: Path) -> Iterator[None]:
	"""Make `folder` refuse new names: read-only for a user, immutable for root (who ignores modes)."""
	if os.geteuid() != 0:
		folder.chmod(0o555)
		try:
			yield
		finally:
			folder.chmod(0o755)
		return
	made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
	if made.returncode:
		pytest.skip(f"cannot make {folder} immutable here: {made.stderr.strip()}")
	try:
		yield
	finally:
		subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_file_whose_folder_denies_the_write_fails_alone(content_store: ContentStore) -> None:
	files = populate(content_store, 3)
	victim = "plans/Locked/subjects/S9.json"
	content_store.write(victim, subject(CDN, 9))
	with writes_denied(paths.file_path(content_store.root, victim).parent):
		results = {r.path: r for r in content_store.rewrite_many([*files, victim], to_local)}
	failed = results[victim]
	assert not failed.changed and failed.old_sha256 == canonical.sha256(subject(CDN, 9))
	assert failed.error is not None and failed.error.errno in (errno.EACCES, errno.EPERM)
	assert "permission denied" in str(failed.error) and victim in str(failed.error)
	assert content_store.read(victim) == subject(CDN, 9)
	for n in range(3):
		assert results[subject_path(n)].changed and results[subject_path(n)].error is None
		assert content_store.read(subject_path(n)) == subject(LOCAL, n, "v2")
	assert temps(content_store) == []  # the refused file's temp is not left behind


def test_a_transform_that_raises_or_bytes_that_are_not_json_fail_alone(content_store: ContentStore) -> None:
	files = populate(content_store, 3)
	content_store.write("plans/P/notes.json", b"not json at all")

	def transform(path: str, data: bytes) -> bytes | None:
		if path == subject_path(1):
			raise KeyError("a bug in the caller")
		return to_local(path, data)

	results = {r.path: r for r in content_store.rewrite_many([*files, "plans/P/notes.json"], transform)}
	assert "not a JSON document" in str(results["plans/P/notes.json"].error)
	assert "a bug in the caller" in str(results[subject_path(1)].error)
	assert content_store.read(subject_path(1)) == files[subject_path(1)]
	assert [results[subject_path(n)].changed for n in (0, 2)] == [True, True]
	assert content_store.read(subject_path(2)) == subject(LOCAL, 2, "v2")


def space_asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
	"""From now on, the space each call of the disk guard asks for, in order."""
	calls: list[int] = []
	real = disk.ensure_space

	def counted(root, min_free_percent, needed=0):
		calls.append(needed)
		return real(root, min_free_percent, needed)

	monkeypatch.setattr(disk, "ensure_space", counted)
	return calls


def test_the_disk_guard_runs_once_per_batch_for_its_total(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	files = populate(content_store, 7)
	asked = space_asked(monkeypatch)
	batches = list(content_store.rewrite_batches(files, to_local, batch_size=3))
	assert [len(batch) for batch in batches] == [3, 3, 1]
	sizes = [len(subject(LOCAL, n, "v2")) for n in range(7)]
	assert asked == [sum(sizes[0:3]), sum(sizes[3:6]), sizes[6]]


def test_rewrite_many_works_in_batches_of_the_size_asked(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	files = populate(content_store, 7)
	asked = space_asked(monkeypatch)
	results = content_store.rewrite_many(files, to_local, batch_size=3)
	assert [r.path for r in results] == sorted(files) and all(r.changed for r in results)
	assert len(asked) == 3  # one guard per batch: 3 + 3 + 1


def test_a_batch_the_disk_guard_refuses_changes_nothing(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	files = populate(content_store, 3)
	status = disk.DiskStatus(str(content_store.root), total=1000, free=10)

	def full(root, pct, needed=0):
		raise disk.DiskSpaceLowError(status, pct, needed)

	monkeypatch.setattr(disk, "ensure_space", full)
	results = content_store.rewrite_many(files, to_local)
	assert [r.path for r in results] == sorted(files)  # one result per path, sorted
	assert all(not r.changed and "the disk is full" in str(r.error) for r in results)
	assert all(content_store.read(path) == data for path, data in files.items())
	assert temps(content_store) == []


def test_a_failed_sync_replaces_nothing(content_store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
	files = populate(content_store, 3)

	def broken(folder: str) -> None:
		raise OSError(errno.EIO, "Input/output error")

	monkeypatch.setattr(store_module, "_sync_filesystem", broken)
	results = content_store.rewrite_many(files, to_local)
	assert [r.path for r in results] == sorted(files)  # one result per path, sorted
	assert all(r.error is not None and r.error.errno == errno.EIO for r in results)
	assert all(content_store.read(path) == data for path, data in files.items())
	assert temps(content_store) == []


def test_a_folder_that_cannot_be_synced_fails_its_files(
	content_store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	"""Renamed, but not known to survive a power cut: each is reported failed, with its old version."""
	files = populate(content_store, 3)
	real_fsync = os.fsync

	def broken(fd: int) -> None:
		if os.path.isdir(f"/proc/self/fd/{fd}"):
			raise OSError(errno.EIO, "Input/output error")
		real_fsync(fd)

	monkeypatch.setattr(os, "fsync", broken)
	results = content_store.rewrite_many(files, to_local)
	assert [r.path for r in results] == sorted(files)
	assert [(r.error.operation, r.error.errno) for r in results] == [("write", errno.EIO)] * 3
	assert [r.old_sha256 for r in results] == [canonical.sha256(files[path]) for path in sorted(files)]


def test_locks_are_held_through_a_batch_and_released_before_it_is_yielded(tmp_path: Path) -> None:
	store = ContentStore(tmp_path / "content", tmp_path / "locks")
	files = populate(store, 4)
	other = ContentStore(
		store.root, store.lock_dir, lock_timeout=0.05
	)  # its own lock files, so flock conflicts
	blocked = []

	def transform(path: str, data: bytes) -> bytes | None:
		if path == subject_path(1):  # the batch holds S0 and S1 now
			try:
				other.write(subject_path(0), b"{}\n")
			except OSError as e:
				blocked.append(str(e))
		return to_local(path, data)

	batches = store.rewrite_batches(files, transform, batch_size=2)
	first = next(batches)
	assert [r.path for r in first] == [subject_path(0), subject_path(1)]
	assert len(blocked) == 1 and "held the lock" in blocked[0]
	assert other.write(subject_path(1), subject(CDN, 1, "v3")).changed  # released once yielded
	assert [r.path for r in next(batches)] == [subject_path(2), subject_path(3)]
	assert store.read(subject_path(1)) == subject(CDN, 1, "v3")
	with pytest.raises(ValueError, match="batch_size"):
		next(store.rewrite_batches(files, transform, batch_size=0))


# --- a concurrent writer in another process ------------------------------------------------------------------


def _write_in_a_loop(root: str, lock_dir: str, private: str, seconds: float, last) -> None:
	store = ContentStore(root, lock_dir, private_root=private)
	stop_at = time.monotonic() + seconds
	n = 0
	while time.monotonic() < stop_at:
		n += 1
		store.write(subject_path(0), subject(CDN, 0, f"w{n}"))
		last.value = n
		time.sleep(0.002)  # filelock polls for a held lock: let the batches in


def test_a_concurrent_write_of_the_same_path_is_never_lost(content_store: ContentStore) -> None:
	populate(content_store, 50)
	last = CTX.Value("i", 0)
	writer = CTX.Process(
		target=_write_in_a_loop,
		args=(
			str(content_store.root),
			str(content_store.lock_dir),
			str(content_store.private_root),
			2.0,
			last,
		),
	)
	writer.start()
	listing = [subject_path(n) for n in range(50)]
	seen, batches, newest = set(), 0, 0
	while writer.is_alive() or batches == 0:
		results = content_store.rewrite_many(listing, to_local)
		assert [result.path for result in results] == sorted(listing)
		assert all(result.error is None for result in results)
		doc = json.loads(content_store.read(subject_path(0)))  # whole, never torn
		edition = int(doc["edition"][1:]) if doc["edition"].startswith("w") else 0  # 0: as populated
		# A batch re-links the version it read under the lock, the newest: it never brings back an older.
		assert edition >= newest, f"w{newest} was overwritten by a batch's re-link of w{edition}"
		seen.add(edition)
		newest = edition
		batches += 1
		time.sleep(0.01)  # as a relink records each batch: a batch writer that never lets go starves `write`
	writer.join(30)
	assert writer.exitcode == 0 and last.value > 10
	assert len(seen) > 3, f"the batches did not overlap the writer: {seen}"
	final = content_store.read(subject_path(0))
	# The writer's last version, re-linked by a batch after it or not: never an older version.
	assert final in (subject(CDN, 0, f"w{last.value}"), subject(LOCAL, 0, f"w{last.value}"))


# --- SIGKILL at random moments ------------------------------------------------------------------------------

KILL_FILES = 300  # one batch, so a kill between its first rename and its last leaves a mix
MID_BATCH_KILLS = 15
MAX_KILL_RUNS = 150


def killed_writers(store: ContentStore, target, pause, seed: int) -> Iterator[int]:
	"""Run `target(root, lock_dir, private_root, ready)` in a forked child and SIGKILL it `pause()`
	seconds after it is ready, again and again (at most MAX_KILL_RUNS); yields each run's number once
	the child is dead, for the caller to judge what it left."""
	for run in range(1, MAX_KILL_RUNS + 1):
		ready = CTX.Event()
		child = CTX.Process(
			target=target, args=(str(store.root), str(store.lock_dir), str(store.private_root), ready)
		)
		child.start()
		try:
			assert ready.wait(30), f"seed {seed} run {run}: the child never started"
			time.sleep(pause())
		finally:
			os.kill(child.pid, signal.SIGKILL)
			child.join(30)
		assert child.exitcode == -signal.SIGKILL
		yield run


def clear_temps(store: ContentStore, where: str) -> list[str]:
	"""The temp files a killed writer left, each named as one, removed so the next kill is judged alone."""
	left = temps(store)
	for name in left:
		assert name.endswith(paths.TEMP_SUFFIX), f"{where}: unexpected {name!r}"
		(store.private_root / paths.TEMP_DIR / name).unlink()
	return left


def _flip_forever(root: str, lock_dir: str, private: str, ready) -> None:
	"""Re-link every file to local URLs, then back to the CDN, batch after batch, until killed."""
	store = ContentStore(root, lock_dir, private_root=private)
	listing = [subject_path(n) for n in range(KILL_FILES)]
	ready.set()
	while True:
		store.rewrite_many(listing, to_local)
		store.rewrite_many(listing, to_cdn)


def test_a_batch_writer_killed_with_sigkill_leaves_every_file_whole(tmp_path: Path) -> None:
	store = ContentStore(tmp_path / "content", tmp_path / "locks")
	files = populate(store, KILL_FILES)
	versions = {path: {data, to_local(path, data)} for path, data in files.items()}
	backups = {path: subject(CDN, n, "v1") for n, path in enumerate(files)}
	seed = random.randrange(2**32)
	rng = random.Random(seed)
	mid_batch = runs = 0
	for runs in killed_writers(store, _flip_forever, lambda: rng.uniform(0.005, 0.15), seed):
		after = {path: store.read(path) for path in files}
		for path, data in after.items():
			assert data in versions[path], f"seed {seed} run {runs}: {path} holds neither version"
			backup = paths.prev_path(store.private_root, path).read_bytes()
			assert backup == backups[path], f"seed {seed} run {runs}: {path}'s .prev changed"
		mixed = len({LOCAL.encode() in data for data in after.values()}) > 1  # between first and last rename
		# or with new bytes in temp files, not all renamed
		mid_batch += mixed or bool(clear_temps(store, f"seed {seed} run {runs}"))
		if mid_batch >= MID_BATCH_KILLS:
			break

	assert mid_batch >= MID_BATCH_KILLS, f"seed {seed}: only {mid_batch} of {runs} kills landed mid-batch"
	# flock died with the child: the next batch is not blocked, and finishes the job.
	assert all(r.error is None for r in store.rewrite_many(list(files), to_local))
	assert all(store.read(path) == to_local(path, data) for path, data in files.items())
