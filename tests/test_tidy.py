"""`ContentStore.tidy`, the file work of the patch `move_prev_files_private`: `.prev` files that writers from
before the private root left in `public/files/memora_content` move to `private/memora_content/prev`, stale
temp files go, and nothing a guest could fetch is left behind."""

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from memora_storage.utils import paths
from memora_storage.utils.store import ContentStore

CTX = multiprocessing.get_context("fork")


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
	site = tmp_path / "sites" / "site1"
	return ContentStore(paths.content_root(site), site / "locks")


def old_layout(store: ContentStore, files: dict[str, bytes]) -> None:
	"""Files as a writer from before the private root left them, beside the content."""
	for relpath, data in files.items():
		target = store.root / relpath
		target.parent.mkdir(parents=True, exist_ok=True)
		target.write_bytes(data)


def public_files(store: ContentStore) -> list[str]:
	return sorted(
		os.path.relpath(os.path.join(folder, name), store.root)
		for folder, _, files in os.walk(store.root)
		for name in files
	)


LEGACY = {
	"plans/P1/manifest.json": b"m2\n",
	"plans/P1/manifest.json.prev": b"m1\n",
	"plans/P1/subjects/S1.json": b"s2\n",
	"plans/P1/subjects/S1.json.prev": b"s1\n",
	"units/وحدة ١.json": b"u2\n",
	"units/وحدة ١.json.prev": b"u1\n",
	"units/gone.json.prev": b"a backup whose file was deleted\n",
	"units/.U9.json.k2j4h5g1.tmp": b"{ half writ",
	"plans/P1/.manifest.json.abcd1234.tmp": b"{ half",
}


def test_backups_move_to_the_private_root_and_stale_temp_files_go(store: ContentStore) -> None:
	old_layout(store, LEGACY)
	time.sleep(0.05)  # the temp files are older than the age given below
	result = store.tidy(min_temp_age=0.01)
	assert (result.moved, result.dropped, result.temps, result.errors) == (4, 0, 2, [])
	assert public_files(store) == ["plans/P1/manifest.json", "plans/P1/subjects/S1.json", "units/وحدة ١.json"]
	for relpath, data in LEGACY.items():
		if relpath.endswith(".prev"):
			assert paths.prev_path(store.private_root, relpath[: -len(".prev")]).read_bytes() == data
	# The moved backups serve rollback as if the store had kept them.
	assert store.rollback("plans/P1/manifest.json").changed
	assert store.read("plans/P1/manifest.json") == b"m1\n"
	assert paths.prev_path(store.private_root, "plans/P1/manifest.json").read_bytes() == b"m2\n"
	# Run again (a re-run patch, a nightly tidy): nothing left to do.
	assert store.tidy(min_temp_age=0.01) == type(result)()


def test_a_temp_file_younger_than_the_age_is_left_to_its_writer(store: ContentStore) -> None:
	old_layout(store, {"units/.U1.json.k2j4h5g1.tmp": b"{ being written"})
	assert store.tidy().temps == 0
	assert public_files(store) == ["units/.U1.json.k2j4h5g1.tmp"]


def test_a_newer_private_backup_wins_over_the_public_one(store: ContentStore) -> None:
	"""A writer with the private root wrote after the old one: its backup is the version before the file."""
	old_layout(store, {"units/U1.json.prev": b"old backup\n"})
	time.sleep(0.02)
	store.write("units/U1.json", b"v1\n")
	store.write("units/U1.json", b"v2\n")  # backup v1 kept privately, later than the public one
	result = store.tidy()
	assert (result.moved, result.dropped) == (0, 1)
	assert public_files(store) == ["units/U1.json"]
	assert paths.prev_path(store.private_root, "units/U1.json").read_bytes() == b"v1\n"


def test_a_newer_public_backup_replaces_an_older_private_one(store: ContentStore) -> None:
	"""An old writer still running during `bench update` rotated the file after the new code did."""
	store.write("units/U1.json", b"v1\n")
	store.write("units/U1.json", b"v2\n")
	time.sleep(0.02)
	old_layout(store, {"units/U1.json.prev": b"v3\n", "units/U1.json": b"v4\n"})
	result = store.tidy()
	assert (result.moved, result.dropped) == (1, 0)
	assert paths.prev_path(store.private_root, "units/U1.json").read_bytes() == b"v3\n"


def test_stale_private_temp_files_of_killed_writers_go(store: ContentStore) -> None:
	store.write("units/U1.json", b"v1\n")
	stale = store.private_root / paths.TEMP_DIR / "0123456789abcdef.tmp"
	stale.write_bytes(b"{ half writ")
	time.sleep(0.05)
	fresh = store.private_root / paths.TEMP_DIR / "fedcba9876543210.tmp"
	fresh.write_bytes(b"{ being writ")
	assert store.tidy(min_temp_age=0.03).temps == 1
	assert not stale.exists() and fresh.exists()


def test_a_backup_set_aside_a_moment_ago_is_not_stale_however_old_its_version(store: ContentStore) -> None:
	"""A backup set aside by a writer keeps its version's old mtime; its age is its ctime's."""
	store.write("units/U1.json", b"v1\n")
	aside = store.private_root / paths.TEMP_DIR / "0123456789abcdef.tmp"
	os.link(store.root / "units" / "U1.json", aside)
	os.utime(aside, (time.time() - 86400, time.time() - 86400))
	assert store.tidy(min_temp_age=60).temps == 0
	assert aside.exists()


def _hold_lock(root: str, lock_dir: str, path: str, held, release) -> None:
	with ContentStore(root, lock_dir).lock(path):
		held.set()
		release.wait(30)


def test_a_backup_moves_only_under_its_paths_writer_lock(store: ContentStore) -> None:
	"""The lock file and flock are the ones writers before the private root took: a writer of theirs that
	is rotating the backup finishes first."""
	old_layout(store, {"units/U1.json": b"v2\n", "units/U1.json.prev": b"v1\n"})
	held, release = CTX.Event(), CTX.Event()
	holder = CTX.Process(
		target=_hold_lock, args=(str(store.root), str(store.lock_dir), "units/U1.json", held, release)
	)
	holder.start()
	try:
		assert held.wait(30)
		blocked = ContentStore(store.root, store.lock_dir, lock_timeout=0.2)
		result = blocked.tidy()
		assert result.moved == 0
		assert len(result.errors) == 1 and "could not lock content file 'units/U1.json'" in result.errors[0]
		assert public_files(store) == ["units/U1.json", "units/U1.json.prev"]
	finally:
		release.set()
		holder.join(30)
	assert store.tidy().moved == 1
	assert public_files(store) == ["units/U1.json"]


def test_tidy_of_a_site_without_content_does_nothing(store: ContentStore) -> None:
	assert store.tidy() == type(store.tidy())()
	assert not store.root.exists() and not store.private_root.exists()


def test_only_names_with_the_temp_prefix_and_suffix_are_temp_files(store: ContentStore) -> None:
	"""A stale `.x.tmp` goes; `notes.tmp` and `.keep`, as old, are someone else's and stay."""
	folder = store.root / "units"
	folder.mkdir(parents=True)
	names = [
		f"{paths.TEMP_PREFIX}x{paths.TEMP_SUFFIX}",
		f"notes{paths.TEMP_SUFFIX}",
		f"{paths.TEMP_PREFIX}keep",
	]
	for name in names:
		(folder / name).write_bytes(b"{}")
	time.sleep(0.05)  # older than the age given below
	assert store.tidy(min_temp_age=0.01).temps == 1
	assert sorted(os.listdir(folder)) == sorted(names[1:])


def test_without_public_only_private_temp_files_go(store: ContentStore) -> None:
	"""`public=False` (a scan's walk saw nothing there) leaves the public tree as it is."""
	old_layout(store, LEGACY)
	store.write("units/U1.json", b"v1\n")
	stale = store.private_root / paths.TEMP_DIR / "0123456789abcdef.tmp"
	stale.write_bytes(b"{ half writ")
	time.sleep(0.05)
	before = public_files(store)
	result = store.tidy(min_temp_age=0.01, public=False)
	assert (result.moved, result.dropped, result.temps, result.errors) == (0, 0, 1, [])
	assert not stale.exists()
	assert public_files(store) == before
