"""The content health scan on a real tree of 2,000 files with planted faults: every missing, orphaned,
invalid and stale file is reported, nothing else is, and `.prev` backups and temp files never are."""

import datetime
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from memora_storage.utils import canonical, paths
from memora_storage.utils.paths import InvalidPathError, validate_relpath
from memora_storage.utils.scan import ExpectedFile, HealthReport, NaiveTimes, full_scan, incremental_scan
from memora_storage.utils.store import ContentStore

PLANS = 40
SUBJECTS_PER_PLAN = 15
UNITS = 2000 - PLANS * (1 + SUBJECTS_PER_PLAN)
HOUR = 3600.0
# Records were modified a day ago and their files written since; planted files are made an hour old so
# that `min_orphan_age` (which spares files younger than a minute) does not hide them.
RECORD_MODIFIED = time.time() - 24 * HOUR


@dataclass
class Tree:
	root: Path
	records: list[ExpectedFile]

	def file(self, path: str) -> Path:
		return self.root / path

	def plant(self, path: str, data: bytes = b'{"planted": true}\n') -> str:
		"""Write a file nobody expects (an hour old) and return its content path."""
		target = self.root / path
		target.parent.mkdir(parents=True, exist_ok=True)
		target.write_bytes(data)
		age(target, HOUR)
		return path


def age(target: Path, seconds: float) -> None:
	when = time.time() - seconds
	os.utime(target, (when, when), follow_symlinks=False)


def plan_name(index: int) -> str:
	# Every seventh plan has an Arabic name: paths in Arabic script must scan like any other.
	return f"خطة-{index}" if index % 7 == 0 else f"PLAN-{index:03d}"


def build_tree(root: Path) -> Tree:
	records = []
	for p in range(PLANS):
		plan = plan_name(p)
		records.append(ExpectedFile(f"plans/{plan}/manifest.json", RECORD_MODIFIED, None, "Plan", plan))
		for s in range(SUBJECTS_PER_PLAN):
			subject = f"SUBJ-{p:03d}-{s:02d}"
			records.append(
				ExpectedFile(
					f"plans/{plan}/subjects/{subject}.json", RECORD_MODIFIED, None, "Subject", subject
				)
			)
	for u in range(UNITS):
		unit = f"وحدة {u}" if u % 11 == 0 else f"UNIT-{u:05d}"
		records.append(ExpectedFile(f"units/{unit}.json", RECORD_MODIFIED, None, "Unit", unit))
	for record in records:
		target = root / record.path
		target.parent.mkdir(parents=True, exist_ok=True)
		target.write_bytes(render(record))
	assert len(records) == 2000
	return Tree(root, records)


def render(record: ExpectedFile) -> bytes:
	return canonical.dumps(
		{"doctype": record.reference_doctype, "name": record.reference_name, "title": "عنوان"}
	)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
	return build_tree(tmp_path / "memora_content")


def paths_of(findings) -> set[str]:
	return {finding.path for finding in findings}


def scan(tree: Tree, records=None, **options) -> HealthReport:
	options.setdefault("min_orphan_age", 0)
	return full_scan(tree.root, tree.records if records is None else records, **options)


# --- full scan ----------------------------------------------------------------------------------------------


def test_clean_tree_reports_nothing(tree: Tree) -> None:
	report = scan(tree)
	assert report.ok, report.to_dict(limit=5)
	assert (report.records, report.checked, report.files) == (2000, 2000, 2000)
	assert report.scope == "full"
	assert report.duration > 0


@pytest.mark.parametrize("read_files", [True, False], ids=["files read", "metadata only"])
def test_full_scan_reports_exactly_the_planted_faults(tree: Tree, read_files: bool) -> None:
	rng = random.Random(20260125)
	by_path = {record.path: record for record in tree.records}
	pool = sorted(by_path)
	rng.shuffle(pool)

	# Missing: 37 random files, and a whole plan folder (manifest and all its subjects).
	missing = set(pool[:37])
	for path in missing:
		tree.file(path).unlink()
	gone_plan = plan_name(5)
	gone = {path for path in by_path if path.startswith(f"plans/{gone_plan}/")}
	for path in sorted(gone, key=len, reverse=True):
		if path not in missing:
			tree.file(path).unlink()
	os.rmdir(tree.file(f"plans/{gone_plan}/subjects"))
	os.rmdir(tree.file(f"plans/{gone_plan}"))
	missing |= gone
	pool = [path for path in pool if path not in missing]

	# Invalid: every kind of corruption a crash, a hand edit or a stray process leaves.
	corrupt = pool[:9]
	invalid = set(corrupt)
	half = tree.file(corrupt[0])
	half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
	tree.file(corrupt[1]).write_bytes(b'{"name": "x", "title": }\n')
	tree.file(corrupt[2]).write_bytes(b"")
	tree.file(corrupt[3]).write_bytes(b"   \n")
	tree.file(corrupt[4]).write_bytes(b'{"title": "\xff\xfe bad utf-8"}\n')
	tree.file(corrupt[5]).write_bytes(b"<html>502 Bad Gateway</html>")
	tree.file(corrupt[6]).unlink()
	tree.file(corrupt[6]).mkdir()  # a folder where the file should be
	tree.file(corrupt[7]).unlink()
	tree.file(corrupt[7]).symlink_to(tree.file(pool[100]))  # valid JSON, but never follow a link
	tree.file(corrupt[8]).unlink()
	os.mkfifo(tree.file(corrupt[8]))  # must not hang the scan
	pool = pool[9:]

	# Stale: files older than their record, and files that differ from a fresh render.
	stale = set(pool[:23])
	for path in stale:
		age(tree.file(path), 30 * HOUR)
	rerendered = pool[23:40]
	stale |= set(rerendered)
	records = [
		replace(record, content=b'{"changed": true}\n') if record.path in rerendered else record
		for record in tree.records
	]
	pool = pool[40:]

	# Orphans: beside expected files, in new folders, deep down, in Arabic, with spaces, not JSON at all,
	# a name that is not even UTF-8, and a symlink nobody expects.
	orphans = {
		tree.plant("units/UNIT-99999.json"),
		tree.plant(f"plans/{plan_name(3)}/subjects/SUBJ-ghost.json"),
		tree.plant("plans/PLAN-deleted/manifest.json"),
		tree.plant("plans/PLAN-deleted/subjects/SUBJ-1.json"),
		tree.plant("plans/PLAN-deleted/subjects/SUBJ-2.json"),
		tree.plant("archive/2025/01/old export.json"),
		tree.plant("units/وحدة-يتيمة.json"),
		tree.plant("plans/خطة-محذوفة/manifest.json"),
		tree.plant("README.txt", b"not json"),
		tree.plant(f"plans/{gone_plan}/subjects/leftover.json"),
	}
	raw_name = os.path.join(os.fsencode(tree.root), b"units", b"bad-\xff.json")
	with open(raw_name, "wb") as f:
		f.write(b"{}")
	age(Path(os.fsdecode(raw_name)), HOUR)
	orphans.add(os.fsdecode(b"units/bad-\xff.json"))
	(tree.root / "units" / "link.json").symlink_to(tree.file(pool[0]))
	orphans.add("units/link.json")

	plant_backups_and_temp_files(tree, rng, missing)

	report = scan(tree, records, read_files=read_files)
	if not read_files:
		# Metadata shows what is empty or no regular file, and what is older than its record; a file
		# cut short, not JSON or not what a fresh render gives waits for a scan that reads the files.
		invalid = {corrupt[2], corrupt[6], corrupt[7], corrupt[8]}
		stale -= set(rerendered)

	assert paths_of(report.missing) == missing
	assert set(report.orphaned) == orphans
	assert paths_of(report.invalid) == invalid
	assert paths_of(report.stale) == stale
	assert report.errors == []
	assert report.records == report.checked == 2000
	assert not report.ok
	# Findings name their record so the Frappe layer can regenerate it.
	first = report.missing[0]
	assert (first.reference_doctype, first.reference_name) == (
		by_path[first.path].reference_doctype,
		by_path[first.path].reference_name,
	)
	reasons = {finding.path: finding.reason for finding in report.invalid}
	assert reasons[corrupt[2]] == "empty file"
	assert reasons[corrupt[6]] == reasons[corrupt[8]] == "not a regular file"
	assert reasons[corrupt[7]] == "a symbolic link, not a regular file"
	if read_files:
		assert reasons[corrupt[3]] == "empty file"
		assert reasons[corrupt[4]] == "not valid UTF-8 text"
		assert reasons[corrupt[1]].startswith("not valid JSON")
		assert {finding.reason for finding in report.stale if finding.path in rerendered} == {
			"differs from a fresh render"
		}
	assert report.missing == sorted(report.missing, key=lambda f: f.path)
	assert report.orphaned == sorted(report.orphaned)


def plant_backups_and_temp_files(tree: Tree, rng: random.Random, missing: set[str]) -> int:
	"""`.prev` copies (even garbage, even beside missing files or none at all) and writers' temp files;
	returns how many names a walk of the tree meets that are not content (a dot-folder counts once)."""
	planted: set[Path] = set()
	for path in rng.sample([record.path for record in tree.records], 50):
		target = tree.file(path)
		if target.parent.is_dir():
			planted |= {Path(f"{target}.prev"), target.parent / f".{target.name}.a1b2c3d4.tmp"}
			Path(f"{target}.prev").write_bytes(b"{ not json")
			(target.parent / f".{target.name}.a1b2c3d4.tmp").write_bytes(b"{ half writ")
	for path in sorted(missing)[:5]:
		if tree.file(path).parent.is_dir():
			planted.add(Path(f"{tree.file(path)}.prev"))
			Path(f"{tree.file(path)}.prev").write_bytes(b"{}")
	for name in ("ghost.json.prev", "ghost.json.tmp", ".hidden.json", ".lock"):
		planted.add(tree.root / tree.plant(f"units/{name}"))
	tree.plant(".staging/plans/x/manifest.json")  # a dot-folder is a temp folder, never content
	return len(planted) + 1


def test_prev_and_temp_files_are_never_reported(tree: Tree) -> None:
	"""Backups left in public by writers from before the private root, until the patch moves them."""
	store = ContentStore(tree.root, tree.root.parent / "locks")
	for record in tree.records[:30]:
		store.write(record.path, render(record) + b" ")
	rewritten = {record.path: render(record) + b" " for record in tree.records[:30]}
	records = [replace(r, content=rewritten[r.path]) if r.path in rewritten else r for r in tree.records]
	assert scan(tree, records).left_behind == 0
	planted = plant_backups_and_temp_files(tree, random.Random(7), set())
	assert sum(1 for name in os.listdir(tree.root / "units") if name.endswith(".prev")) > 0

	report = scan(tree, records)
	assert report.ok, report.to_dict(limit=5)
	assert report.files == 2000
	assert report.left_behind == planted  # what `ContentStore.tidy` will look at


def test_the_private_tree_is_never_scanned(tmp_path: Path) -> None:
	"""A site's backups and temp files live in `private/memora_content`, outside the root a scan walks:
	neither a full nor an incremental scan reports or even counts them, however they look."""
	site = tmp_path / "sites" / "site1"
	tree = build_tree(paths.content_root(site))
	store = ContentStore(tree.root, site / "locks")
	for record in tree.records[:50]:
		store.write(record.path, render(record) + b" ")  # 50 backups under private/memora_content/prev
	rewritten = {record.path: render(record) + b" " for record in tree.records[:50]}
	records = [replace(r, content=rewritten[r.path]) if r.path in rewritten else r for r in tree.records]
	private = paths.private_root(site)
	assert len(list((private / "prev").rglob("*.prev"))) == 50
	(private / "tmp" / "0123456789abcdef.tmp").write_bytes(b"{ half writ")  # a killed writer's
	(private / "prev" / "ghost.json").write_bytes(b"{}")  # would be an orphan, were it public

	full = scan(tree, records)
	assert full.ok, full.to_dict(limit=5)
	assert (full.files, full.recent) == (2000, 0)
	incremental = incremental_scan(tree.root, records, since=0, paths=["ghost.json"], min_orphan_age=0)
	assert incremental.ok, incremental.to_dict(limit=5)
	assert incremental.checked == 2000


def test_a_fresh_render_decides_staleness_not_the_mtime(tree: Tree) -> None:
	"""The store leaves identical bytes untouched, so an unchanged render may keep an old mtime."""
	old, changed, failing = tree.records[0], tree.records[1], tree.records[2]
	for record in (old, changed, failing):
		age(tree.file(record.path), 30 * HOUR)
	calls = []

	def renderer(record: ExpectedFile, data: bytes):
		def render_now() -> bytes:
			calls.append(record.path)
			return data

		return render_now

	def broken() -> bytes:
		raise RuntimeError("template error")

	records = [
		replace(old, content=renderer(old, render(old))),
		replace(changed, content=renderer(changed, render(changed).replace(b"}", b', "x": 1}'))),
		replace(failing, content=broken),
		*tree.records[3:],
	]
	report = scan(tree, records)
	assert paths_of(report.stale) == {changed.path}
	assert [(f.path, f.reason) for f in report.errors] == [
		(failing.path, "render failed: RuntimeError: template error")
	]
	assert calls == [old.path, changed.path]


def test_mtime_slack_and_record_time_zone(tree: Tree) -> None:
	record = tree.records[0]
	target = tree.file(record.path)
	mtime = time.time() - HOUR
	os.utime(target, (mtime, mtime))

	def stale_when(modified, **options) -> bool:
		return bool(scan(tree, [replace(record, modified=modified)], **options).stale)

	assert not stale_when(mtime + 1.0)  # within the default slack: the kernel's clock is coarse
	assert stale_when(mtime + 5.0)
	assert not stale_when(mtime + 5.0, mtime_slack=10.0)
	# Frappe's `modified` is naive, in the System Settings zone: 10:00 in UTC+3 is 07:00 UTC.
	riyadh = datetime.timezone(datetime.timedelta(hours=3))
	wall = datetime.datetime.fromtimestamp(mtime, riyadh).replace(tzinfo=None)
	assert stale_when(wall + datetime.timedelta(minutes=30), record_tz=riyadh)
	assert not stale_when(wall - datetime.timedelta(minutes=30), record_tz=riyadh)
	aware = datetime.datetime.fromtimestamp(mtime + 600, datetime.timezone.utc)
	assert stale_when(aware, record_tz=riyadh)  # an aware datetime carries its own zone
	assert not stale_when(None)


def test_records_with_unsafe_paths_are_errors_not_reads(tree: Tree, tmp_path: Path) -> None:
	secret = tmp_path / "secret.json"
	secret.write_text("{}")
	bad = [
		"../secret.json",
		"/etc/passwd",
		"units/../../secret.json",
		"units/.hidden.json",
		"units/x.json.prev",
		"",
	]
	records = [
		ExpectedFile(path, reference_doctype="Unit", reference_name=str(i)) for i, path in enumerate(bad)
	]
	report = scan(tree, [*records, *tree.records])
	assert paths_of(report.errors) == set(bad)
	assert all(f.reason.startswith("record cannot be checked") for f in report.errors)
	assert (report.records, report.checked) == (2000 + len(bad), 2000)
	assert not (report.missing or report.orphaned or report.invalid or report.stale)


@pytest.mark.parametrize(
	"path",
	[
		"units/UNIT-1.json",
		"units/وحدة الأعداد.json",
		"plans/خطة/subjects/مادة.json",
		"units/a b-c_d.e.json",
		"units/-dash.json",
		"units/" + "ع" * 120 + ".json",  # 245 bytes: past paths' name limit
		"units/" + "x" * 60 + ".json",
		"/".join(["d"] * 20) + "/x.json",
		"units/ leading-space.json",
		"units/a:b.json",
		"c:/units/x.json",
		"units/x.json.tmp",
		"units/x.json.prev",
		"units//x.json",
		"units/./x.json",
		"units/x\u0085.json",
		"units/x\x7f.json",
		"units/tab\t.json",
		"units/x\\y.json",
	],
)
def test_scan_accepts_exactly_the_paths_the_path_rules_accept(tmp_path: Path, path: str) -> None:
	"""The scan's fast path for plain names must never accept what paths.validate_relpath refuses."""
	try:
		validate_relpath(path)
		valid = True
	except InvalidPathError:
		valid = False
	report = full_scan(tmp_path, [ExpectedFile(path)], min_orphan_age=0)
	assert (len(report.missing), len(report.errors)) == ((1, 0) if valid else (0, 1))


def test_orphans_younger_than_min_age_are_counted_not_reported(tree: Tree) -> None:
	old = tree.plant("units/old-orphan.json")
	(tree.root / "units" / "new-orphan.json").write_bytes(b"{}")  # its record may not be visible yet
	report = full_scan(tree.root, tree.records)
	assert report.orphaned == [old]
	assert report.recent == 1
	assert full_scan(tree.root, tree.records, min_orphan_age=0).orphaned == ["units/new-orphan.json", old]


def test_files_changing_during_the_scan_are_not_misreported(tree: Tree) -> None:
	"""The walk comes first; a record's file deleted (with its record) meanwhile is no orphan."""
	doomed = tree.plant("units/deleted-while-scanning.json")
	late = "units/created-while-scanning.json"

	def records() -> Iterator[ExpectedFile]:
		os.unlink(tree.file(doomed))
		tree.plant(late)
		yield from tree.records

	report = scan(tree, records())
	assert report.ok, report.to_dict(limit=5)


def test_symlinked_folders_are_not_followed(tree: Tree) -> None:
	(tree.root / "units" / "loop").symlink_to(tree.root, target_is_directory=True)
	report = scan(tree)
	assert report.orphaned == ["units/loop"]
	assert report.files == 2001


def test_report_to_dict_is_json_and_capped(tree: Tree) -> None:
	for record in tree.records[:30]:
		tree.file(record.path).unlink()
	with open(os.path.join(os.fsencode(tree.root), b"units", b"\xff.json"), "wb") as f:
		f.write(b"{}")
	report = scan(tree, min_orphan_age=0)
	data = json.loads(json.dumps(report.to_dict(limit=10)))
	assert data["counts"]["missing"] == 30
	assert len(data["missing"]) == 10
	assert data["truncated"] is True
	assert data["orphaned"] == ["units/\\udcff.json"]
	assert data["scope"] == "full"
	assert data["ok"] is False
	assert set(data["missing"][0]) == {"path", "reason", "reference_doctype", "reference_name"}
	assert datetime.datetime.fromisoformat(data["started_at"]).tzinfo is not None
	full = report.to_dict()
	assert full["truncated"] is False
	assert len(full["missing"]) == 30


# --- incremental scan ---------------------------------------------------------------------------------------


def test_incremental_scan_judges_changed_records_and_their_folders(tree: Tree) -> None:
	since = time.time() - HOUR
	recent_plan = plan_name(2)
	changed = {
		f"plans/{recent_plan}/manifest.json",
		f"plans/{recent_plan}/subjects/SUBJ-002-03.json",
		"units/UNIT-00100.json",
		"units/UNIT-00101.json",
		"units/UNIT-00102.json",
	}
	records = [replace(r, modified=time.time()) if r.path in changed else r for r in tree.records]
	tree.file("units/UNIT-00100.json").unlink()
	tree.file("units/UNIT-00101.json").write_bytes(b"{")
	age(tree.file("units/UNIT-00102.json"), 2 * HOUR)  # older than its record's change just now
	# Faults among unchanged records wait for the full scan...
	tree.file("units/UNIT-00200.json").unlink()
	untouched_orphan = tree.plant(f"plans/{plan_name(4)}/subjects/ghost.json")
	# ...but orphans in the changed records' folders, and folders with no expected file at all, are found.
	orphans = {
		tree.plant("units/ghost.json"),
		tree.plant(f"plans/{recent_plan}/subjects/ghost.json"),
		tree.plant("plans/PLAN-deleted/manifest.json"),
		tree.plant("plans/PLAN-deleted/subjects/s.json"),
		tree.plant("old/export/everything.json"),
	}

	report = incremental_scan(tree.root, records, since=since, min_orphan_age=0)
	assert report.scope == "incremental"
	assert (report.records, report.checked) == (2000, len(changed))
	assert paths_of(report.missing) == {"units/UNIT-00100.json"}
	assert paths_of(report.invalid) == {"units/UNIT-00101.json"}
	assert paths_of(report.stale) == {"units/UNIT-00102.json"}
	assert set(report.orphaned) == orphans
	assert untouched_orphan not in report.orphaned
	assert report.folders < 20  # the changed folders, their ancestors and the orphan folders, no more

	full = full_scan(tree.root, records, min_orphan_age=0)
	assert set(full.orphaned) == orphans | {untouched_orphan}
	assert paths_of(full.missing) == {"units/UNIT-00100.json", "units/UNIT-00200.json"}


def test_incremental_scan_named_paths_and_random_sample(tree: Tree) -> None:
	named = [tree.records[0].path, tree.records[-1].path]
	first = incremental_scan(tree.root, tree.records, paths=named, sample=100, seed=42, min_orphan_age=0)
	assert first.checked == 102
	assert first.ok
	# The sample is uniform over the other records and reproducible from its seed.
	for record in tree.records:
		tree.file(record.path).unlink()
	again = incremental_scan(tree.root, tree.records, paths=named, sample=100, seed=42, min_orphan_age=0)
	other = incremental_scan(tree.root, tree.records, paths=named, sample=100, seed=43, min_orphan_age=0)
	assert len(again.missing) == 102
	assert set(named) <= paths_of(again.missing)
	assert paths_of(again.missing) != paths_of(other.missing)
	assert {path.split("/")[0] for path in paths_of(again.missing)} == {"plans", "units"}


def test_incremental_scan_sampling_everything_equals_a_full_scan(tree: Tree) -> None:
	rng = random.Random(5)
	for record in rng.sample(tree.records, 20):
		tree.file(record.path).unlink()
	for record in rng.sample(tree.records, 20):
		if tree.file(record.path).exists():
			tree.file(record.path).write_bytes(b"[1, 2")
	tree.plant("units/ghost.json")
	tree.plant("plans/PLAN-deleted/manifest.json")
	full = full_scan(tree.root, tree.records, min_orphan_age=0)
	incremental = incremental_scan(tree.root, tree.records, sample=len(tree.records), min_orphan_age=0)
	assert incremental.checked == full.checked == 2000
	for name in ("missing", "invalid", "stale", "errors"):
		assert paths_of(getattr(incremental, name)) == paths_of(getattr(full, name)), name
	assert incremental.orphaned == full.orphaned == ["plans/PLAN-deleted/manifest.json", "units/ghost.json"]


def test_incremental_scan_with_nothing_changed_still_lists_the_root(tree: Tree) -> None:
	orphan = tree.plant("stray/file.json")
	report = incremental_scan(tree.root, tree.records, since=time.time(), min_orphan_age=0)
	assert report.checked == 0
	assert report.orphaned == [orphan]


def test_incremental_scan_lists_the_folders_of_named_paths_without_records(
	tree: Tree, tmp_path: Path
) -> None:
	"""The Frappe layer can name the paths of records just deleted: a file left behind is an orphan."""
	left_behind = tree.plant(f"plans/{plan_name(9)}/subjects/SUBJ-deleted.json")
	(tmp_path / "outside.json").write_text("{}")
	report = incremental_scan(
		tree.root,
		tree.records,
		paths=[left_behind, "../outside.json", "../../etc/passwd"],
		min_orphan_age=0,
	)
	assert report.checked == 0
	assert report.orphaned == [left_behind]


def test_a_metadata_scan_closes_every_folder_it_opened(tree: Tree) -> None:
	"""Folders stay open between records of one folder; none is left open, even when the records fail."""

	def open_fds() -> int:
		return len(os.listdir("/proc/self/fd"))

	def failing():
		yield from tree.records[:1500]
		raise RuntimeError("the database went away")

	before = open_fds()
	assert scan(tree, read_files=False).ok
	assert open_fds() == before
	with pytest.raises(RuntimeError, match="went away"):
		scan(tree, failing(), read_files=False)
	assert open_fds() == before


@pytest.mark.parametrize(
	"zone", ["UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe", "Europe/Dublin"]
)
def test_naive_times_agree_with_a_whole_conversion_across_offset_changes(zone: str) -> None:
	"""Each text's timestamp is its own conversion's, through DST gaps and folds (New York's 1 and
	8 March, Lord Howe's half-hour shift, Dublin's negative DST) and after the minute cache is cleared."""
	tz = ZoneInfo(zone)
	times = NaiveTimes(tz, minutes=50)
	rng = random.Random(zone)
	start = datetime.datetime(2026, 1, 1)
	texts = []
	for day in range(0, 365, 3):
		for hour in (0, 1, 2, 3, 12, 23):
			moment = start + datetime.timedelta(days=day, hours=hour, minutes=rng.randrange(60))
			moment = moment.replace(
				second=rng.randrange(60), microsecond=rng.choice([0, rng.randrange(10**6)])
			)
			texts.append(str(moment))
	for fixed in ("2026-03-08 02:30:00.5", "2026-11-01 01:30:59", "2026-04-05 01:45:00.000001"):
		texts.append(fixed)
	for text in texts + texts[::7]:  # again, some from the cache, after more than 50 minutes were seen
		whole = datetime.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()
		assert times(text) == pytest.approx(whole, abs=1e-6), text


def test_naive_times_parse_other_shapes_whole() -> None:
	times = NaiveTimes(ZoneInfo("Asia/Kolkata"))
	kolkata = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
	assert times("2026-12-07 10:00:00") == datetime.datetime(2026, 12, 7, 10, tzinfo=kolkata).timestamp()
	assert (
		times("2026-12-07T10:00:00+00:00")
		== datetime.datetime(2026, 12, 7, 10, tzinfo=datetime.timezone.utc).timestamp()
	)
	assert times("2026-12-07 10:00") == datetime.datetime(2026, 12, 7, 10, tzinfo=kolkata).timestamp()
	assert (
		times("2026-12-07 10:00:07.25")
		== datetime.datetime(2026, 12, 7, 10, tzinfo=kolkata).timestamp() + 7.25
	)
	with pytest.raises(ValueError):
		times("2026-12-07 10:00:0x")
