"""Relinking in place: links found and rewritten in any JSON shape, and `rewrite_many`'s batches on a
real directory, under a concurrent writer and under SIGKILL."""

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from memora_storage.utils import canonical, links, paths
from memora_storage.utils.resolver import UrlSettings, get_content_url
from memora_storage.utils.store import ContentStore

SITE = "https://site.example"
LOCAL = f"{SITE}/files/memora_content"
CDN = "https://cdn.example.com/memora"
OLD_CDN = "https://old-cdn.example.com"
BASES = links.Bases([LOCAL, CDN, OLD_CDN, f"{CDN}/nested"])
CTX = multiprocessing.get_context("fork")


def to_local(path: str) -> str:
	return get_content_url(path, UrlSettings(local_domain=SITE))


def subject(base: str, units: list[str], **extra) -> bytes:
	return canonical.dumps(
		{
			"doctype": "Subject",
			"name": "S1",
			"units": [{"name": u, "title": u, "url": f"{base}/units/{u}.json"} for u in units],
			**extra,
		}
	)


def test_links_are_rewritten_to_what_a_render_gives() -> None:
	data = subject(CDN, ["U1", "U2"])
	new = links.rewrite(data, BASES, to_local)
	assert new == subject(LOCAL, ["U1", "U2"])
	assert links.rewrite(new, BASES, to_local) is None  # nothing left to change


def test_links_anywhere_in_the_document_with_versions_and_encoding() -> None:
	url = get_content_url(
		"units/وحدة 1.json",
		UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, version_in_urls=True),
		True,
		"ab" * 32,
	)
	assert "?v=abababababab" in url and "%D9%88" in url
	data = canonical.dumps({"deep": [{"x": {"link": url}}], "old": f"{OLD_CDN}/units/U2.json#top"})
	seen = []

	def url_for(path: str) -> str:
		seen.append(path)
		return to_local(path)

	new = json.loads(links.rewrite(data, BASES, url_for))
	assert sorted(seen) == ["units/U2.json", "units/وحدة 1.json"]
	assert new["deep"][0]["x"]["link"] == to_local("units/وحدة 1.json")
	assert new["old"] == to_local("units/U2.json")


def test_the_longest_base_wins_and_other_strings_are_left_alone() -> None:
	seen = []
	data = canonical.dumps(
		{
			"a": f"{CDN}/nested/units/U1.json",
			"text": "see https://elsewhere.example/units/U1.json",
			"external": "https://elsewhere.example/units/U1.json",
			"traversal": f"{CDN}/../secret.json",
			"unknown": f"{CDN}/units/U9.json",
		}
	)

	def url_for(path: str) -> str | None:
		seen.append(path)
		return None if path == "units/U9.json" else to_local(path)

	new = json.loads(links.rewrite(data, BASES, url_for))
	assert seen == ["units/U1.json", "units/U9.json"]  # nested base stripped whole; traversal refused
	assert new["a"] == to_local("units/U1.json")
	assert new["text"] == "see https://elsewhere.example/units/U1.json"
	assert new["external"] == "https://elsewhere.example/units/U1.json"
	assert new["traversal"] == f"{CDN}/../secret.json"
	assert new["unknown"] == f"{CDN}/units/U9.json"


def test_bytes_that_are_not_json_are_refused() -> None:
	with pytest.raises(links.LinkError):
		links.rewrite(b"{not json", BASES, to_local)


# --- rewrite_many on a real directory ----------------------------------------------------------------------


def populate(store: ContentStore, count: int, base: str = CDN) -> dict[str, bytes]:
	files = {f"plans/P/subjects/S{i}.json": subject(base, [f"U{i}a", f"U{i}b"]) for i in range(count)}
	for path, data in files.items():
		store.write(path, data)
	return files


def relinker(path: str, data: bytes) -> bytes | None:
	return links.rewrite(data, BASES, to_local)


def test_a_batch_rewrites_leaves_prev_and_unchanged_files_alone(content_store: ContentStore) -> None:
	first = populate(content_store, 5)  # the previous content version, kept as .prev
	files = {path: data.replace(b'"Subject"', b'"Subject v2"') for path, data in first.items()}
	for path, data in files.items():
		content_store.write(path, data)
	already = "plans/P/subjects/S0.json"
	content_store.write(already, subject(LOCAL, ["U0a", "U0b"]))
	mtime = os.stat(paths.resolve(content_store.root, already)).st_mtime_ns
	seen_before_commit = []
	results = content_store.rewrite_many(
		[*files, "plans/P/subjects/missing.json"],
		relinker,
		before_commit=lambda changed: seen_before_commit.extend(r.path for r in changed),
	)
	by_path = {r.path: r for r in results}
	assert by_path["plans/P/subjects/missing.json"].missing
	assert not by_path[already].changed
	assert os.stat(paths.resolve(content_store.root, already)).st_mtime_ns == mtime
	changed = [p for p in files if p != already]
	assert sorted(seen_before_commit) == sorted(changed)
	for path in changed:
		result = by_path[path]
		new = content_store.read(path)
		assert new == relinker(path, files[path]) and b"Subject v2" in new
		assert (result.old_sha256, result.sha256, result.size) == (
			canonical.sha256(files[path]),
			canonical.sha256(new),
			len(new),
		)
		assert paths.prev_path(content_store.private_root, path).read_bytes() == first[path]
	assert not list((content_store.private_root / paths.TEMP_DIR).iterdir())


def test_a_refused_rename_fails_alone(content_store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
	files = populate(content_store, 3)
	victim = "plans/P/subjects/S1.json"
	real_replace = os.replace

	def replace(src, dst, *args, **kwargs):
		if dst == "S1.json":
			raise PermissionError(13, "Permission denied")
		return real_replace(src, dst, *args, **kwargs)

	monkeypatch.setattr(os, "replace", replace)
	results = {r.path: r for r in content_store.rewrite_many(files, relinker)}
	assert results[victim].error is not None and "permission denied" in str(results[victim].error)
	assert content_store.read(victim) == files[victim]
	for path in files:
		if path != victim:
			assert results[path].changed and content_store.read(path) == subject(
				LOCAL, [f"U{path[-6]}a", f"U{path[-6]}b"]
			)


def _concurrent_writer(root: str, lock_dir: str, private: str, stop_at: float) -> None:
	store = ContentStore(root, lock_dir, private_root=private)
	n = 0
	while time.monotonic() < stop_at:
		store.write("plans/P/subjects/S0.json", subject(CDN, [f"W{n}"]))
		n += 1


def test_a_concurrent_writer_is_never_lost(content_store: ContentStore) -> None:
	populate(content_store, 50)
	stop_at = time.monotonic() + 2
	writer = CTX.Process(
		target=_concurrent_writer,
		args=(str(content_store.root), str(content_store.lock_dir), str(content_store.private_root), stop_at),
	)
	writer.start()
	while time.monotonic() < stop_at:
		content_store.rewrite_many([f"plans/P/subjects/S{i}.json" for i in range(50)], relinker)
	writer.join()
	last = content_store.read("plans/P/subjects/S0.json")
	# The file is the writer's last version, or that version re-linked: never an older one.
	doc = json.loads(last)
	writes = [u["name"] for u in doc["units"]]
	assert len(writes) == 1 and writes[0].startswith("W")
	final = subject(CDN, writes)
	assert last in (final, links.rewrite(final, BASES, to_local))


def _relink_forever(root: str, lock_dir: str, private: str, count: int, started) -> None:
	"""Flip every file between CDN and local links, batch after batch, until killed."""
	store = ContentStore(root, lock_dir, private_root=private)
	started.set()
	bases = [CDN, LOCAL]
	n = 0
	while True:
		target = bases[n % 2]

		def transform(path: str, data: bytes, target=target) -> bytes | None:
			return links.rewrite(data, BASES, lambda p: f"{target}/{p}")

		store.rewrite_many([f"plans/P/subjects/S{i}.json" for i in range(count)], transform)
		n += 1


def test_sigkill_mid_batch_leaves_every_file_whole(tmp_path: Path) -> None:
	store = ContentStore(tmp_path / "root", tmp_path / "locks")
	count = 200
	files = populate(store, count)
	versions = {path: {data, relinker(path, data)} for path, data in files.items()}
	landed = 0
	for _kill in range(30):
		started = CTX.Event()
		child = CTX.Process(
			target=_relink_forever,
			args=(str(store.root), str(store.lock_dir), str(store.private_root), count, started),
		)
		child.start()
		started.wait(10)
		time.sleep(random.uniform(0.002, 0.06))
		os.kill(child.pid, signal.SIGKILL)
		child.join()
		after = {path: store.read(path) for path in files}
		# Killed between its first rename and its last, or with new bytes written but not yet renamed.
		mixed = len({LOCAL.encode() in data for data in after.values()}) > 1
		landed += mixed or bool(list((store.private_root / paths.TEMP_DIR).iterdir()))
		for path, data in after.items():
			assert data in versions[path], f"{path} holds bytes that are neither version"
			prev = paths.prev_path(store.private_root, path)
			if prev.exists():
				assert prev.read_bytes() in versions[path]
		store.tidy(min_temp_age=0)  # the killed batch's temp files, so the next kill is judged alone
		store.rewrite_many(list(files), relinker)  # flock died with the process: writing goes on
		assert all(store.read(path) == relinker(path, data) for path, data in files.items())
	assert landed >= 15, f"only {landed} of 30 kills landed while files were being replaced"
