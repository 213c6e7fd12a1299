"""The content store on a real directory: atomic writes, `.prev` rotation under the private root, deletes,
rollback, file modes, cross-process locking, and the deterministic JSON bytes that make hashes comparable
with the CDN."""

import contextlib
import datetime
import decimal
import errno
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memora_storage.utils import canonical, disk, paths
from memora_storage.utils import store as store_module
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.store import FILE_MODE, ContentStore, FileOperationError, WriteResult

PATH = "plans/P1/manifest.json"


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
	"""A store on a real directory, locks outside the content root as in a site."""
	return ContentStore(tmp_path / "content", tmp_path / "locks")


def listing(folder: Path) -> list[str]:
	return sorted(os.listdir(folder))


def prev(store: ContentStore, path: str = PATH) -> Path:
	return paths.prev_path(store.private_root, path)


def private_files(store: ContentStore) -> list[str]:
	"""Every file under the private root, relative to it."""
	return sorted(
		os.path.relpath(os.path.join(folder, name), store.private_root)
		for folder, _, files in os.walk(store.private_root)
		for name in files
	)


# --- canonical JSON -----------------------------------------------------------------------------------------


def test_dumps_is_independent_of_insertion_order() -> None:
	one = {"name": "P1", "subjects": [{"id": "S1", "title": "الجبر"}], "meta": {"b": 2, "a": 1}}
	two = {"meta": {"a": 1, "b": 2}, "subjects": [{"title": "الجبر", "id": "S1"}], "name": "P1"}
	assert list(one) != list(two)
	assert canonical.dumps(one) == canonical.dumps(two)
	assert canonical.sha256(canonical.dumps(one)) == canonical.sha256(canonical.dumps(two))


def test_dumps_keeps_arabic_readable_utf8() -> None:
	data = canonical.dumps({"title": "الوحدة الأولى: الأعداد"})
	assert b"\\u" not in data
	assert "الوحدة الأولى: الأعداد".encode() in data
	assert data.endswith(b"\n")
	assert json.loads(data) == {"title": "الوحدة الأولى: الأعداد"}


def test_dumps_list_order_is_kept() -> None:
	assert json.loads(canonical.dumps({"a": [3, 1, 2]}))["a"] == [3, 1, 2]


def test_dumps_converts_common_frappe_values() -> None:
	data = json.loads(
		canonical.dumps(
			{
				"when": datetime.datetime(2026, 1, 25, 10, 30),
				"day": datetime.date(2026, 1, 25),
				"at": datetime.time(8, 0),
				"took": datetime.timedelta(minutes=90),
				"price": decimal.Decimal("12.50"),
				"tags": {"b", "a"},
			}
		)
	)
	assert data == {
		"when": "2026-01-25T10:30:00",
		"day": "2026-01-25",
		"at": "08:00:00",
		"took": "1:30:00",
		"price": 12.5,
		"tags": ["a", "b"],
	}


def test_dumps_refuses_unknown_types() -> None:
	with pytest.raises(TypeError, match="object is not JSON serialisable"):
		canonical.dumps({"x": object()})


def test_sha256_is_the_plain_hex_digest() -> None:
	assert canonical.sha256(b"abc") == hashlib.sha256(b"abc").hexdigest()


# --- write / read ---------------------------------------------------------------------------------------------


def test_write_then_read(store: ContentStore) -> None:
	data = canonical.dumps({"plan": "P1", "title": "خطة"})
	result = store.write(PATH, data)
	assert result == WriteResult(PATH, hashlib.sha256(data).hexdigest(), len(data), changed=True)
	assert store.read(PATH) == data
	assert (store.root / "plans" / "P1" / "manifest.json").read_bytes() == data
	assert store.exists(PATH)
	assert not store.exists("plans/P2/manifest.json")


def test_first_write_keeps_no_prev(store: ContentStore) -> None:
	store.write(PATH, b"v1\n")
	assert listing(store.root / "plans" / "P1") == ["manifest.json"]
	assert private_files(store) == []


def test_overwrite_keeps_previous_version_as_prev(store: ContentStore) -> None:
	target = store.root / "plans" / "P1" / "manifest.json"
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2 longer\n")
	assert target.read_bytes() == b"v2 longer\n"
	assert prev(store).read_bytes() == b"v1\n"
	store.write(PATH, b"v3\n")
	assert target.read_bytes() == b"v3\n"
	assert prev(store).read_bytes() == b"v2 longer\n"
	assert listing(target.parent) == ["manifest.json"]
	assert private_files(store) == ["prev/plans/P1/manifest.json.prev"]  # no temp file left either


def test_prev_is_outside_the_public_tree_of_a_site(tmp_path: Path) -> None:
	"""What nginx serves is `public/`; `.prev` and temp files go to `private/memora_content`, which it
	never serves (nor Frappe, which serves `private/files` only)."""
	site = tmp_path / "sites" / "site1"
	store = ContentStore(paths.content_root(site), site / "locks")
	assert store.private_root == site / "private" / "memora_content"
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	backup = prev(store)
	assert backup == site / "private" / "memora_content" / "prev" / "plans" / "P1" / "manifest.json.prev"
	assert backup.read_bytes() == b"v1\n"
	public = [os.path.join(folder, name) for folder, _, files in os.walk(site / "public") for name in files]
	assert public == [str(store.root / PATH)]


def test_the_prev_is_a_hard_link_of_the_version_it_keeps(store: ContentStore) -> None:
	"""Keeping `.prev` costs a link, not a copy: the same filesystem holds both roots."""
	store.write(PATH, b"v1\n")
	before = os.stat(store.root / PATH)
	store.write(PATH, b"v2\n")
	assert os.stat(prev(store)).st_ino == before.st_ino
	assert os.stat(prev(store)).st_nlink == 1


def test_a_private_root_inside_the_content_root_is_refused(tmp_path: Path) -> None:
	with pytest.raises(ValueError, match="must not contain each other"):
		ContentStore(tmp_path / "content", tmp_path / "locks", private_root=tmp_path / "content" / "private")
	with pytest.raises(ValueError, match="must not contain each other"):
		ContentStore(tmp_path / "content", tmp_path / "locks", private_root=tmp_path)


def test_an_explicit_private_root_is_used(tmp_path: Path) -> None:
	store = ContentStore(tmp_path / "content", tmp_path / "locks", private_root=tmp_path / "elsewhere")
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	assert (tmp_path / "elsewhere" / "prev" / "plans" / "P1" / "manifest.json.prev").read_bytes() == b"v1\n"


def test_identical_bytes_do_not_rotate_prev(store: ContentStore) -> None:
	target = store.root / "plans" / "P1" / "manifest.json"
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	before = os.stat(target)
	result = store.write(PATH, b"v2\n")
	assert result.changed is False
	assert result.sha256 == canonical.sha256(b"v2\n")
	assert prev(store).read_bytes() == b"v1\n"
	after = os.stat(target)
	assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "file was rewritten"


def test_same_size_different_bytes_is_a_change(store: ContentStore) -> None:
	store.write(PATH, b"aaaa\n")
	assert store.write(PATH, b"bbbb\n").changed is True
	assert store.read(PATH) == b"bbbb\n"


@pytest.mark.parametrize("size", [300_000, 3_000_000])  # below and above the threaded check
@pytest.mark.parametrize("where", [0, -1])  # the first and the last byte differ
def test_large_files_are_compared_and_hashed_exactly(store: ContentStore, size: int, where: int) -> None:
	old = bytes(range(256)) * (size // 256)
	new = bytearray(old)
	new[where] ^= 1
	store.write(PATH, old)
	assert store.write(PATH, old) == WriteResult(PATH, hashlib.sha256(old).hexdigest(), len(old), False)
	result = store.write(PATH, bytes(new))
	assert result == WriteResult(PATH, hashlib.sha256(new).hexdigest(), len(new), changed=True)
	assert store.read(PATH) == new
	assert prev(store).read_bytes() == old


def test_empty_file_can_be_written(store: ContentStore) -> None:
	assert store.write(PATH, b"").size == 0
	assert store.read(PATH) == b""


def test_new_folders_are_0755_even_under_a_strict_umask(store: ContentStore) -> None:
	"""nginx must enter the folders too: a Plan's new folder under umask 077 would otherwise be 0700."""
	old_umask = os.umask(0o077)
	try:
		store.write("plans/P-umask/subjects/S1.json", b"{}")
	finally:
		os.umask(old_umask)
	for folder in ("plans", "plans/P-umask", "plans/P-umask/subjects"):
		assert stat.S_IMODE((store.root / folder).stat().st_mode) == 0o755, folder


def test_private_folders_are_0700_whatever_the_umask(store: ContentStore) -> None:
	"""Nobody but the site's user enters the private root, so a backup is unreadable to other users."""
	old_umask = os.umask(0o022)
	try:
		store.write(PATH, b"v1\n")
		store.write(PATH, b"v2\n")
	finally:
		os.umask(old_umask)
	for folder, dirs, _ in os.walk(store.private_root):
		for name in dirs:
			mode = stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
			assert mode == 0o700, os.path.join(folder, name)


def test_files_are_world_readable_0644_even_under_a_strict_umask(store: ContentStore) -> None:
	"""nginx runs as another user: content must be 0644 whatever umask the worker has."""
	old_umask = os.umask(0o077)
	try:
		store.write(PATH, b"v1\n")
		store.write(PATH, b"v2\n")
	finally:
		os.umask(old_umask)
	target = store.root / "plans" / "P1" / "manifest.json"
	assert FILE_MODE == 0o644
	assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
	assert stat.S_IMODE(os.stat(prev(store)).st_mode) == 0o644  # a rollback brings it back into public


def test_no_temp_files_are_left_behind(store: ContentStore) -> None:
	for i in range(50):
		store.write(PATH, canonical.dumps({"i": i, "pad": "x" * (i * 37)}))
		store.write(f"units/U{i % 3}.json", canonical.dumps({"i": i}))
	names = listing(store.root / "plans" / "P1") + listing(store.root / "units")
	assert sorted(names) == ["U0.json", "U1.json", "U2.json", "manifest.json"]
	assert listing(store.private_root / "tmp") == []


def test_invalid_path_writes_nothing(store: ContentStore) -> None:
	with pytest.raises(InvalidPathError):
		store.write("../escape.json", b"x")
	with pytest.raises(InvalidPathError):
		store.write("plans/P1/manifest.json.prev", b"x")
	assert not store.root.exists()
	assert not store.private_root.exists()
	assert not store.root.parent.joinpath("escape.json").exists()


def test_read_missing_file_explains_itself(store: ContentStore) -> None:
	with pytest.raises(FileOperationError) as caught:
		store.read("units/missing.json")
	assert "could not read content file 'units/missing.json': no such file" in str(caught.value)
	assert caught.value.operation == "read"
	assert caught.value.path == "units/missing.json"
	assert caught.value.errno == errno.ENOENT
	assert isinstance(caught.value.cause, FileNotFoundError)


def test_file_operation_error_is_an_oserror_with_errno(store: ContentStore) -> None:
	with pytest.raises(OSError) as caught:
		store.read("units/missing.json")
	assert caught.value.errno == 2


# --- remove / remove_tree --------------------------------------------------------------------------------------


def test_remove_deletes_file_and_prev(store: ContentStore) -> None:
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	store.write("plans/P1/subjects/S1.json", b"s\n")
	assert store.remove(PATH) is True
	assert listing(store.root / "plans" / "P1") == ["subjects"]
	assert not prev(store).exists()
	assert store.read("plans/P1/subjects/S1.json") == b"s\n"
	assert store.remove(PATH) is False


def test_remove_takes_an_orphaned_prev_too(store: ContentStore) -> None:
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	(store.root / PATH).unlink()
	assert store.remove(PATH) is True
	assert listing(store.root / "plans" / "P1") == []
	assert private_files(store) == []


def test_remove_takes_a_prev_left_beside_the_file_by_an_older_writer(store: ContentStore) -> None:
	"""Until the patch has moved them, `.prev` files from before the private root sit in public."""
	store.write(PATH, b"v1\n")
	(store.root / (PATH + ".prev")).write_bytes(b"v0\n")
	assert store.remove(PATH) is True
	assert listing(store.root / "plans" / "P1") == []


def test_remove_of_never_written_path_is_false(store: ContentStore) -> None:
	assert store.remove("units/never.json") is False


def test_remove_tree_deletes_a_plan_folder_only(store: ContentStore) -> None:
	store.write("plans/P1/manifest.json", b"m1\n")
	store.write("plans/P1/manifest.json", b"m2\n")
	store.write("plans/P1/subjects/S1.json", b"s1\n")
	store.write("plans/P1/subjects/S2.json", b"s2\n")
	store.write("plans/P2/manifest.json", b"other\n")
	store.write("plans/P10/manifest.json", b"prefix sibling\n")
	store.write("plans/P2/manifest.json", b"other, again\n")
	assert store.remove_tree("plans/P1") == 4  # manifest, its .prev, two subjects
	assert not (store.root / "plans" / "P1").exists()
	assert not (store.private_root / "prev" / "plans" / "P1").exists()
	assert listing(store.root / "plans") == ["P10", "P2"]
	assert store.read("plans/P2/manifest.json") == b"other, again\n"
	assert prev(store, "plans/P2/manifest.json").read_bytes() == b"other\n"
	assert store.remove_tree("plans/P1") == 0


def test_remove_tree_takes_the_backups_of_a_folder_already_gone(store: ContentStore) -> None:
	store.write(PATH, b"m1\n")
	store.write(PATH, b"m2\n")
	shutil.rmtree(store.root / "plans" / "P1")
	assert store.remove_tree("plans/P1") == 1
	assert private_files(store) == []


def test_remove_tree_refuses_escapes(store: ContentStore) -> None:
	store.write("plans/P1/manifest.json", b"m\n")
	with pytest.raises(InvalidPathError):
		store.remove_tree("..")
	with pytest.raises(InvalidPathError):
		store.remove_tree("plans/..")
	assert store.read("plans/P1/manifest.json") == b"m\n"


# --- rollback --------------------------------------------------------------------------------------------------


def test_rollback_swaps_current_and_prev(store: ContentStore) -> None:
	target = store.root / PATH
	store.write(PATH, b"old\n")
	store.write(PATH, b"new!\n")
	result = store.rollback(PATH)
	assert result == WriteResult(PATH, canonical.sha256(b"old\n"), 4, changed=True)
	assert target.read_bytes() == b"old\n"
	assert prev(store).read_bytes() == b"new!\n"
	assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
	assert listing(target.parent) == ["manifest.json"]
	assert private_files(store) == ["prev/plans/P1/manifest.json.prev"]


def test_rollback_twice_restores(store: ContentStore) -> None:
	target = store.root / PATH
	store.write(PATH, b"old\n")
	store.write(PATH, b"new\n")
	store.rollback(PATH)
	store.rollback(PATH)
	assert target.read_bytes() == b"new\n"
	assert prev(store).read_bytes() == b"old\n"
	assert listing(target.parent) == ["manifest.json"]


def test_rollback_without_prev_fails_clearly_and_changes_nothing(store: ContentStore) -> None:
	store.write(PATH, b"only\n")
	with pytest.raises(
		FileOperationError, match=r"could not roll back content file '.+': no previous version"
	) as caught:
		store.rollback(PATH)
	assert (caught.value.operation, caught.value.path, caught.value.errno) == (
		"roll back",
		PATH,
		errno.ENOENT,
	)
	assert store.read(PATH) == b"only\n"
	assert listing(store.root / "plans" / "P1") == ["manifest.json"]
	assert private_files(store) == []


def test_rollback_of_a_removed_file_fails_and_keeps_its_prev(store: ContentStore) -> None:
	store.write(PATH, b"a\n")
	store.write(PATH, b"b\n")
	(store.root / PATH).unlink()
	with pytest.raises(
		FileOperationError, match=r"could not roll back content file .+: no such file"
	) as caught:
		store.rollback(PATH)
	assert caught.value.errno == errno.ENOENT
	assert prev(store).read_bytes() == b"a\n"
	assert listing(store.root / "plans" / "P1") == []


def test_rollback_after_its_folder_was_removed_fails_with_enoent(store: ContentStore) -> None:
	store.write(PATH, b"a\n")
	store.write(PATH, b"b\n")
	shutil.rmtree(store.root / "plans" / "P1")
	with pytest.raises(
		FileOperationError, match=r"could not roll back content file .+: no such file"
	) as caught:
		store.rollback(PATH)
	assert caught.value.errno == errno.ENOENT
	assert prev(store).read_bytes() == b"a\n"
	assert not (store.root / "plans" / "P1").exists()


def test_write_after_rollback_keeps_rolled_back_version_as_prev(store: ContentStore) -> None:
	store.write(PATH, b"a\n")
	store.write(PATH, b"b\n")
	store.rollback(PATH)
	store.write(PATH, b"c\n")
	assert store.read(PATH) == b"c\n"
	assert prev(store).read_bytes() == b"a\n"


def test_without_hard_links_the_prev_is_a_copy(store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
	"""Some filesystems (vfat, some FUSE and SMB mounts) refuse link(2): `.prev` is then a fsynced copy."""
	store.write(PATH, b"v1\n")
	real_link = os.link

	def no_link(source, target, *args, **kwargs):
		if kwargs.get("src_dir_fd") is not None:  # the link of the current file
			raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
		return real_link(source, target, *args, **kwargs)

	monkeypatch.setattr(os, "link", no_link)
	store.write(PATH, b"v2\n")
	assert prev(store).read_bytes() == b"v1\n"
	assert os.stat(prev(store)).st_ino != os.stat(store.root / PATH).st_ino
	assert stat.S_IMODE(os.stat(prev(store)).st_mode) == 0o644
	store.rollback(PATH)
	assert store.read(PATH) == b"v1\n"
	assert prev(store).read_bytes() == b"v2\n"
	assert private_files(store) == ["prev/plans/P1/manifest.json.prev"]


def test_a_failed_rename_leaves_file_and_prev_as_they_were(
	store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
	"""The `.prev` steps come before the file's rename; when that rename fails they are undone."""
	store.write(PATH, b"v1\n")
	store.write(PATH, b"v2\n")
	real_replace = os.replace

	def failing(source, target, *args, **kwargs):
		if kwargs.get("dst_dir_fd") is not None:  # the rename into the public folder
			raise OSError(errno.EIO, os.strerror(errno.EIO))
		return real_replace(source, target, *args, **kwargs)

	monkeypatch.setattr(os, "replace", failing)
	for action in (lambda: store.write(PATH, b"v3\n"), lambda: store.rollback(PATH)):
		with pytest.raises(FileOperationError):
			action()
		assert store.read(PATH) == b"v2\n"
		assert prev(store).read_bytes() == b"v1\n"
		assert private_files(store) == ["prev/plans/P1/manifest.json.prev"]
	monkeypatch.setattr(os, "replace", real_replace)
	store.write("units/U1.json", b"first\n")
	monkeypatch.setattr(os, "replace", failing)
	with pytest.raises(FileOperationError):
		store.write("units/U1.json", b"second\n")
	assert store.read("units/U1.json") == b"first\n"
	assert not prev(store, "units/U1.json").exists()


# --- the writer lock holds across processes ---------------------------------------------------------------------


def _hold_lock(
	root: str, lock_dir: str, path: str, held: "multiprocessing.synchronize.Event", release
) -> None:
	with ContentStore(root, lock_dir).lock(path):
		held.set()
		release.wait(30)


@pytest.fixture
def lock_held_by_other_process(store: ContentStore) -> Iterator[None]:
	"""Another OS process holding the writer lock of PATH for as long as the test runs."""
	ctx = multiprocessing.get_context("fork")
	held, release = ctx.Event(), ctx.Event()
	proc = ctx.Process(target=_hold_lock, args=(str(store.root), str(store.lock_dir), PATH, held, release))
	proc.start()
	try:
		assert held.wait(30), "helper process never took the lock"
		yield
	finally:
		release.set()
		proc.join(30)


def test_writer_lock_is_held_across_processes(
	tmp_path: Path, store: ContentStore, lock_held_by_other_process
) -> None:
	"""Paths share lock files by a hash (a fixed few of them): another path waits only if it shares
	PATH's, one in LOCK_SLOTS."""
	others = [f"units/U{n}.json" for n in range(5 * store_module.LOCK_SLOTS)]
	sharing = next(path for path in others if store_module._slot_of(path) == store_module._slot_of(PATH))
	free = next(path for path in others if store_module._slot_of(path) != store_module._slot_of(PATH))
	store.write(free, b"other paths are not blocked\n")
	blocked = ContentStore(store.root, store.lock_dir, lock_timeout=0.2)
	for path in (PATH, sharing):
		with pytest.raises(FileOperationError, match=re.escape(f"could not lock content file {path!r}")):
			blocked.write(path, b"must wait\n")
		assert not (store.root / path).exists()


def test_lock_files_are_a_fixed_few(store: ContentStore) -> None:
	"""A new path makes no lock file of its own once its slot has one: a site of 100,000 Units keeps
	LOCK_SLOTS lock files, not 100,000."""
	paths = [f"units/U{n}.json" for n in range(2 * store_module.LOCK_SLOTS)]
	store.write_many({path: b"{}\n" for path in paths})
	made = sorted(store.lock_dir.iterdir())
	slots = {store_module._slot_of(path) for path in paths}
	assert len(made) == len(slots) <= store_module.LOCK_SLOTS
	new = [path for n in range(200) if store_module._slot_of(path := f"units/New{n}.json") in slots]
	assert len(new) > 100 and store.write_many({path: b"{}\n" for path in new})[0].changed
	assert sorted(store.lock_dir.iterdir()) == made


def test_the_lock_files_of_earlier_versions_are_dropped(store: ContentStore) -> None:
	store.write_many({f"units/U{n}.json": b"{}\n" for n in range(3)})
	old = [hashlib.sha1(f"units/U{n}.json".encode()).hexdigest() + ".lock" for n in range(3)]
	for name in old:
		(store.lock_dir / name).touch()
	(store.lock_dir / "notes.lock").touch()  # not one of ours: left alone
	kept = sorted(p.name for p in store.lock_dir.iterdir() if p.name not in old)

	assert store.drop_path_locks() == 3
	assert sorted(p.name for p in store.lock_dir.iterdir()) == kept
	assert store.drop_path_locks() == 0
	assert store.write("units/U1.json", b"[]\n").changed  # the folder's lock is still there to take
	assert ContentStore(store.root, store.lock_dir / "never-made").drop_path_locks() == 0


def test_lock_is_free_again_after_the_holder_exits(store: ContentStore) -> None:
	ctx = multiprocessing.get_context("fork")
	held, release = ctx.Event(), ctx.Event()
	release.set()
	proc = ctx.Process(target=_hold_lock, args=(str(store.root), str(store.lock_dir), PATH, held, release))
	proc.start()
	proc.join(30)
	assert held.is_set() and proc.exitcode == 0
	assert ContentStore(store.root, store.lock_dir, lock_timeout=2).write(PATH, b"x\n").changed


@contextlib.contextmanager
def immutable(file: Path) -> Iterator[None]:
	"""`chattr +i`: not even root may unlink the file (or, for a folder, anything in it) meanwhile."""
	chattr = shutil.which("chattr")
	if not chattr or subprocess.run([chattr, "+i", str(file)], capture_output=True).returncode:
		pytest.skip("chattr +i is not available here (needs root on ext4, xfs or btrfs)")
	try:
		yield
	finally:
		subprocess.run([chattr, "-i", str(file)], check=True)


def test_a_refused_remove_says_delete_and_keeps_the_backup(store: ContentStore) -> None:
	store.write(PATH, b"old\n")
	store.write(PATH, b"new\n")
	with immutable(store.root / "plans" / "P1"), pytest.raises(FileOperationError) as caught:
		store.remove(PATH)
	error = caught.value
	assert (error.operation, error.path, error.errno) == ("delete", PATH, errno.EPERM)
	assert str(error).startswith(f"could not delete content file {PATH!r}: ")
	assert store.read(PATH) == b"new\n" and prev(store).read_bytes() == b"old\n"


def test_a_refused_remove_tree_says_delete_and_which_folder(store: ContentStore) -> None:
	store.write("plans/P1/subjects/S1.json", b"{}\n")
	with (
		immutable(store.root / "plans" / "P1" / "subjects" / "S1.json"),
		pytest.raises(FileOperationError) as caught,
	):
		store.remove_tree("plans/P1")
	error = caught.value
	assert (error.operation, error.path, error.errno) == ("delete", "plans/P1", errno.EPERM)
	assert isinstance(error.cause, PermissionError)
	assert str(error).startswith("could not delete content file 'plans/P1': ")
	assert store.read("plans/P1/subjects/S1.json") == b"{}\n"


def test_the_disk_full_wording_only_when_the_write_is_bigger_than_the_free_space(tmp_path: Path) -> None:
	status = disk.DiskStatus(str(tmp_path), total=1000, free=100)
	too_big = FileOperationError("write", PATH, disk.DiskSpaceLowError(status, 95, 101))
	assert "the disk is full: 101 bytes to write, 100 bytes free" in str(too_big)
	fits = FileOperationError("write", PATH, disk.DiskSpaceLowError(status, 95, 100))
	assert "the disk is full" not in str(fits)  # it fits: the guard's minimum is why
