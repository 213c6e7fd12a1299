"""Only what is meant to be public reaches `/files/` and the CDN: no `.prev`, and no temp file under a name
a guest could fetch, ever appears in the public tree; the uploader and the CDN check never send a backup.

The public folders are watched with inotify (every name created or renamed into them is reported, however
short-lived), not listed, so a temp file that exists for microseconds cannot slip between two listings.
"""

import ctypes
import multiprocessing
import os
import struct
from pathlib import Path

import pytest

from memora_storage.utils import canonical, paths
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.s3 import CdnBucket
from memora_storage.utils.store import ContentStore, FileOperationError
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import local_files, verify

IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")

CTX = multiprocessing.get_context("fork")
PATHS = [
	"plans/P1/manifest.json",
	"plans/P1/subjects/S1.json",
	"plans/P1/subjects/S2.json",
	"units/U1.json",
	"units/وحدة ١.json",
]
BIG = "units/big.json"  # over a megabyte: compared and hashed on a thread


class Inotify:
	"""Names created in, or renamed into, a set of folders, as the kernel reports them."""

	def __init__(self, folders: list[Path]):
		libc = ctypes.CDLL(None, use_errno=True)
		self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
		if self.fd < 0:
			pytest.skip(f"inotify is not available here: {os.strerror(ctypes.get_errno())}")
		self.folders: dict[int, Path] = {}
		for folder in folders:
			wd = libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_CREATE | IN_MOVED_TO)
			assert wd >= 0, f"cannot watch {folder}: {os.strerror(ctypes.get_errno())}"
			self.folders[wd] = folder
		self.seen: list[tuple[Path, str, int]] = []

	def drain(self) -> None:
		while True:
			try:
				buffer = os.read(self.fd, 1 << 16)
			except BlockingIOError:
				return
			offset = 0
			while offset < len(buffer):
				wd, mask, _cookie, length = _EVENT.unpack_from(buffer, offset)
				assert not mask & IN_Q_OVERFLOW, "inotify dropped events: the test saw only part of them"
				name = buffer[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
				self.seen.append((self.folders[wd], os.fsdecode(name), mask))
				offset += _EVENT.size + length

	def close(self) -> None:
		os.close(self.fd)


def _folders(root: Path) -> list[Path]:
	return [Path(folder) for folder, _, _ in os.walk(root)]


def version(writer: int, seq: int, path: str) -> bytes:
	pad = 1_200_000 if path == BIG else (seq * 7919 + writer * 104_729) % 30_000
	return canonical.dumps({"writer": writer, "seq": seq, "path": path, "pad": "x" * pad})


def _churn(root: str, lock_dir: str, writer: int, rounds: int) -> None:
	"""Writes, identical rewrites, rollbacks, deletes and rewrites of every path, and of a big file."""
	store = ContentStore(root, lock_dir)
	for seq in range(rounds):
		for path in PATHS:
			data = version(writer, seq, path)
			store.write(path, data)
			store.write(path, data)  # identical: must not touch anything
			if seq % 3 == 1:
				try:
					store.rollback(path)
				except FileOperationError:  # the other writer removed it meanwhile: no previous version
					pass
			if seq % 5 == 4:
				store.remove(path)
		if seq % 4 == 0:
			store.write(BIG, version(writer, seq, BIG))
	store.write("plans/P2/manifest.json", version(writer, 0, "plans/P2/manifest.json"))


def test_nothing_but_content_files_and_folders_ever_appears_in_public(tmp_path: Path) -> None:
	site = tmp_path / "sites" / "site1"
	store = ContentStore(paths.content_root(site), site / "locks")
	for path in [*PATHS, BIG]:
		store.write(path, b"{}\n")
		store.write(path, b"{ }\n")  # a .prev exists for every path from the start
	watch = Inotify(_folders(store.root))
	private = Inotify([store.private_root / paths.TEMP_DIR])
	writers = [CTX.Process(target=_churn, args=(str(store.root), str(site / "locks"), w, 30)) for w in (1, 2)]
	try:
		for proc in writers:
			proc.start()
		while any(proc.is_alive() for proc in writers):
			watch.drain()  # keep the kernel's queue short
			private.drain()
			for proc in writers:
				proc.join(0.01)
		watch.drain()
		private.drain()
	finally:
		watch.close()
		private.close()
		for proc in writers:
			if proc.is_alive():
				proc.kill()
	assert [proc.exitcode for proc in writers] == [0, 0]

	content_names = {path.rpartition("/")[2] for path in [*PATHS, BIG]}
	renamed_in = [(folder, name) for folder, name, mask in watch.seen if mask & IN_MOVED_TO]
	created = [(folder, name, mask) for folder, name, mask in watch.seen if mask & IN_CREATE]
	# Every file that appeared in public arrived whole, by a rename, under its final content name.
	assert {name for _, name in renamed_in} <= content_names
	assert [(folder, name) for folder, name, mask in created if not mask & IN_ISDIR] == []
	assert [(folder, name) for folder, name, _ in created] == [(store.root / "plans", "P2")]
	# The watch really saw the writes: each changed write renamed a file in (2 writers, 30 rounds, 5 paths:
	# 300 writes, plus rollbacks and the big file), its temp file made in private.
	assert len(renamed_in) >= 300
	assert len([1 for _, _, mask in private.seen if mask & IN_CREATE]) >= 300

	public = sorted(
		os.path.relpath(os.path.join(folder, name), store.root)
		for folder, _, files in os.walk(store.root)
		for name in files
	)
	assert all(paths.is_content_file(name.rpartition("/")[2]) for name in public), public
	assert os.listdir(store.private_root / paths.TEMP_DIR) == []


# --- the CDN never receives a `.prev` ---------------------------------------------------------------------


def test_uploader_and_verify_never_send_or_list_a_prev(content_store: ContentStore, cdn: CdnBucket) -> None:
	contents = {f"units/u{i}.json": canonical.dumps({"i": i}) for i in range(3)}
	for path, data in contents.items():
		content_store.write(path, b"{}\n")
		content_store.write(path, data)  # every path has a .prev
		content_store.write(path, data)
	# A backup an older writer left in public before the patch moved it: still not content.
	(content_store.root / "units" / "u0.json.prev").write_bytes(b'{"retracted": true}\n')
	(content_store.root / "units" / ".u1.json.abcd1234.tmp").write_bytes(b'{"half')

	found = local_files(content_store.root)
	assert sorted(found) == sorted(contents)
	results = Uploader(content_store, cdn).upload_many(found)
	assert all(result.ok and result.uploaded for result in results)
	assert sorted(item.path for item in cdn.list("")) == sorted(contents)
	assert verify(content_store.root, cdn).clean

	# Asked for a backup by name, the uploader refuses before any request is made.
	refused = Uploader(content_store, cdn).upload_many(["units/u0.json.prev", "units/.u1.json.abcd1234.tmp"])
	assert all(isinstance(result.error, InvalidPathError) for result in refused)
	assert sorted(item.path for item in cdn.list("")) == sorted(contents)

	# A rollback uploads the rolled-back content file, still nothing else.
	content_store.rollback("units/u2.json")
	assert Uploader(content_store, cdn).upload("units/u2.json").uploaded
	assert cdn.get("units/u2.json") == b"{}\n"
	assert sorted(item.path for item in cdn.list("")) == sorted(contents)
