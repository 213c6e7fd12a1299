"""Imports of 10,000 to 100,000 units end published (issue 19): a data import through Frappe
documents with no worker running, then one real `bench worker` until every file is Synced, then the
full health scan, with the worker's memory through both.

Per size N (units), in one run, each figure beside its anchor:

1. Import. N Units through Frappe documents (`insert`, hooks included), in Plans of 10 Subjects of
   1,000 Units, committing once per Subject as a data import does; CDN on, pointing at a bucket of a
   moto server of its own, and no worker running, so every file waits Pending.
2. Drain. One real worker (all queues, a forked child per job, as in production) started after the
   last commit, timed from its start until every Content File row of the import is Synced at its
   current SHA-256, with the PUTs it sent counted from the endpoint's log. Anchor: `rclone copy` of
   the same content folder to another bucket of the same moto, before the drain and after it (goal:
   ours / rclone <= 1.5, the uploads' goal in docs/benchmarks.md).
3. Scan. The full health scan, queued as the nightly cron queues it (`memora_storage.scans.nightly`)
   and run by that worker: its report's `duration_seconds` and the wall clock until the report
   exists. Anchor: `find ROOT -type f | sort` plus the SQL that lists the same records (name,
   modified and path fields of every content DocType, fetched whole), timed together (goal: scan /
   anchor <= 2). Scan and anchor alternate, --repeat times each; medians are reported.
4. Memory. The RSS of the worker and of its job children, sampled every 0.5 s during the drain
   (0.1 s during the scans, which may last under a second): peak (the child's VmHWM) and median of
   the job child, where the work runs, with its anonymous part (the heap, where a leak shows), and
   the worker's peak; the series, thinned, in the results. The goal is memory flat as the count
   grows; this reads "flat" as the RSS peak at the largest size within 1.25x the smallest size's
   (judged with two sizes or more).

Then how each figure grows from the smallest size to the largest. The run deletes what it made
(documents, files, Content File rows, reports, buckets) and restores CDN Settings. The site should
hold no other content: the scan covers the whole site, and rclone copies the whole content folder
(our files alone are copied instead when it holds others). Run it as the bench's owner or root, with
the bench's Python, from the bench's `sites` folder:

    cd BENCH/sites && ../env/bin/python /path/to/memora_storage/benchmarks/bench_import.py \\
        --bench BENCH --site SITE [--sizes 10000,100000] [--repeat N] [--profile] [--quick]

(or MEMORA_BENCH and MEMORA_SITE; `python -m benchmarks --only import` does this for you). It starts
its own worker, so no other worker of the bench should run (it waits while one does). moto does not
fit in the bench's Python: see `common.moto_server_command` (--moto-python overrides). Needs
`rclone` on PATH.
"""

import argparse
import contextlib
import cProfile
import inspect
import io
import json
import math
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe
import psutil
import pymysql

from benchmarks.bench_publish import (
	GOAL_RATIO,
	KEY_PREFIX,
	LOCAL_LINK,
	WORDS,
	Interference,
	Run,
	Stalled,
	app_fingerprint,
	bucket_mismatches,
	by_method,
	cleanup,
	create_public_bucket,
	current_settings,
	log,
	memora_jobs,
	parents_linking,
	rclone_copy,
	rows,
	s3_client,
	wait_idle,
	wait_synced,
)
from benchmarks.common import (
	PySpy,
	add_bench_arguments,
	filesystem_of,
	markdown_table,
	open_site,
	profile_table,
	write_results,
)

UNITS_PER_SUBJECT = 1000
SUBJECTS_PER_PLAN = 10
GOAL_SCAN_RATIO = 2.0
FLAT_GROWTH = 1.25  # "flat": the peak RSS at the largest size within this of the smallest size's
SAMPLE_S = 0.5
SCAN_SAMPLE_S = 0.1  # a full scan of 10,000 files may last under a second
MB = 2**20
REPORT_FIELDS = [
	"name",
	"scope",
	"status",
	"duration_seconds",
	"expected_count",
	"files_count",
	"missing_count",
	"orphaned_count",
	"stale_count",
	"invalid_count",
	"summary",
	"contents_checked",  # a deep scan's, where the app has them
]


# The import ---------------------------------------------------------------------------------------


def shape(n: int) -> dict[str, int]:
	"""How many documents and files N units make: Subjects of 1,000 Units, Plans of 10 Subjects."""
	subjects = max(1, math.ceil(n / UNITS_PER_SUBJECT))
	plans = math.ceil(subjects / SUBJECTS_PER_PLAN)
	return {"units": n, "subjects": subjects, "plans": plans, "files": n + subjects + plans}


class Bodies:
	"""Unit bodies of `low`-`high` KB cut from one random text: cheap enough to make 100,000 of
	them without timing their making, and never all in memory at once."""

	def __init__(self, seed: int, low_kb: int, high_kb: int):
		self.rng = random.Random(seed)
		self.text = " ".join(self.rng.choices(WORDS, k=(high_kb * 1024) // 3))
		self.bytes_per_char = len(self.text.encode()) / len(self.text)
		self.low, self.high = low_kb * 1024, high_kb * 1024

	def next(self) -> str:
		length = int(self.rng.randint(self.low, self.high) / self.bytes_per_char)
		start = self.rng.randrange(len(self.text) - length)
		return self.text[start : start + length]


def batches(tag: str, n: int, bodies: Bodies) -> Iterator[list[dict]]:
	"""The documents of each commit, in import order: a Plan before its first Subject, then each
	Subject with its Units."""
	counts = shape(n)
	unit = 0
	for s in range(counts["subjects"]):
		plan = f"{tag}-p{s // SUBJECTS_PER_PLAN:03}"
		docs = []
		if s % SUBJECTS_PER_PLAN == 0:
			docs.append({"doctype": "Plan", "name": plan, "title": f"Plan {s // SUBJECTS_PER_PLAN}"})
		subject = f"{tag}-s{s:04}"
		docs.append({"doctype": "Subject", "name": subject, "title": f"Subject {s}", "plan": plan})
		for _ in range(min(UNITS_PER_SUBJECT, n - unit)):
			docs.append(
				{
					"doctype": "Unit",
					"name": f"{tag}-u{unit:06}",
					"title": f"Unit {unit}",
					"subject": subject,
					"body": bodies.next(),
				}
			)
			unit += 1
		yield docs


def import_units(tag: str, n: int, body_kb: tuple[int, int]) -> dict:
	"""Insert through Frappe, one commit per Subject; only the inserts and commits are timed."""
	seconds, commits, docs = 0.0, 0, 0
	for batch in batches(tag, n, Bodies(n, *body_kb)):
		started = time.perf_counter()
		for doc in batch:
			frappe.get_doc(doc).insert()
		frappe.db.commit()  # the files are written after this commit
		seconds += time.perf_counter() - started
		commits += 1
		docs += len(batch)
	return {"seconds": seconds, "commits": commits, "documents": docs}


# Memory -------------------------------------------------------------------------------------------


class TreeSampler:
	"""The RSS of a worker and of its forked job children every SAMPLE_S, in a thread.

	Besides the RSS, the anonymous part of the job's (RssAnon: its heap, what a leak grows). A forked
	child counts in its RSS the file-backed pages (shared libraries) it touches after the fork, one
	fault at a time, while the worker's own pages were counted from the start: RSS alone may climb
	where the heap does not.
	"""

	def __init__(self, pid: int, interval: float = SAMPLE_S):
		self.pid = pid
		self.interval = interval
		# (t, worker RSS, then of the largest child or None: RSS, RssAnon)
		self.samples: list[tuple[float, int, int | None, int | None]] = []
		self.child_hwm = 0  # the largest VmHWM of a job child seen: its peak even between samples
		self._stop = threading.Event()
		self._thread = threading.Thread(target=self._loop, daemon=True)

	def __enter__(self) -> "TreeSampler":
		self._thread.start()
		return self

	def __exit__(self, *exc) -> None:
		self._stop.set()
		self._thread.join()

	def _loop(self) -> None:
		started = time.monotonic()
		while True:
			try:
				worker = psutil.Process(self.pid)
				rss = _status(self.pid)["VmRSS"]
				largest = None
				for child in worker.children(recursive=True):
					try:
						status = _status(child.pid)
					except OSError:
						continue  # ended meanwhile
					self.child_hwm = max(self.child_hwm, status["VmHWM"])
					if largest is None or status["VmRSS"] > largest["VmRSS"]:
						largest = status
				child_rss, child_anon = (largest["VmRSS"], largest["RssAnon"]) if largest else (None, None)
				self.samples.append((time.monotonic() - started, rss, child_rss, child_anon))
			except (psutil.NoSuchProcess, OSError):
				return
			if self._stop.wait(self.interval):
				return

	def summary(self) -> dict:
		"""Peak and median in MB of the job child (samples where one ran) and of the worker itself."""
		jobs = [child for _, _, child, _ in self.samples if child is not None]
		anon = [a for _, _, child, a in self.samples if child is not None]
		workers = [rss for _, rss, _, _ in self.samples]
		return {
			"samples": len(self.samples),
			"job_samples": len(jobs),
			# The peak is the children's VmHWM where read: a sample every interval can miss it.
			"job_peak_mb": max(max(jobs, default=0), self.child_hwm) / MB if jobs else None,
			"job_sampled_peak_mb": max(jobs) / MB if jobs else None,
			"job_median_mb": statistics.median(jobs) / MB if jobs else None,
			"job_anon_peak_mb": max(anon) / MB if anon else None,
			"job_anon_median_mb": statistics.median(anon) / MB if anon else None,
			"worker_peak_mb": max(workers) / MB if workers else None,
			"worker_median_mb": statistics.median(workers) / MB if workers else None,
			# [s, worker MB, job MB, job anon MB], thinned to about 100 points: a climb or a step?
			"series": [
				[round(t, 1), round(rss / MB, 1), *(None if v is None else round(v / MB, 1) for v in (c, a))]
				for t, rss, c, a in self.samples[:: max(1, len(self.samples) // 100)]
			],
		}


def _status(pid: int) -> dict[str, int]:
	"""VmRSS, VmHWM (peak RSS so far) and RssAnon of a process, in bytes, from one read."""
	values = dict.fromkeys(("VmRSS", "VmHWM", "RssAnon"), 0)
	with open(f"/proc/{pid}/status", encoding="ascii") as f:
		for line in f:
			key, _, rest = line.partition(":")
			if key in values:
				values[key] = int(rest.split()[0]) * 1024
	return values


# The run ------------------------------------------------------------------------------------------


def machine_state(moto) -> dict:
	"""What else the machine is busy with before a timed scan or anchor: the load, InnoDB's backlog
	of old row versions still to purge (a drain rewrites every Content File row), and moto's memory."""
	return {
		"load_1m": os.getloadavg()[0],
		"innodb_history_length": _innodb_history_length(),
		"moto_rss_mb": round(psutil.Process(moto.process.pid).memory_info().rss / MB),
	}


def _innodb_history_length() -> int | None:
	"""Read with the PROCESS privilege, which a site's login lacks: as the server's root, with the
	password in MEMORA_DB_ROOT_PASSWORD (empty by default, as on a local test server); None if refused."""
	try:
		connection = pymysql.connect(
			host=frappe.conf.db_host or "127.0.0.1",
			port=int(frappe.conf.db_port or 3306),
			user="root",
			password=os.environ.get("MEMORA_DB_ROOT_PASSWORD", ""),
		)
	except pymysql.MySQLError:
		return None
	with connection, connection.cursor() as cursor:
		cursor.execute(
			"select `count` from information_schema.innodb_metrics where name = 'trx_rseg_history_len'"
		)
		return cursor.fetchone()[0]


def files_under(root: Path) -> int:
	return sum(len(files) for _, _, files in os.walk(root))


def drop_bucket(moto, bucket: str) -> None:
	"""Empty and delete a bucket (moto keeps every object in memory)."""
	client = s3_client(moto)
	for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
		keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
		if keys:
			client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
	client.delete_bucket(Bucket=bucket)


def anchor(root: Path) -> dict:
	"""What listing the same files and records costs at the least: `find | sort`, then the rows of
	every content DocType (name, modified, path fields) fetched whole."""
	from memora_storage import publishing

	content_map = publishing.new_context().content_map
	started = time.perf_counter()
	subprocess.run(f"find '{root}' -type f | sort > /dev/null", shell=True, check=True)
	listed = time.perf_counter()
	records = 0
	for doctype, content_type in content_map.items():
		if not frappe.db.table_exists(doctype):
			continue
		fields = ", ".join(f"`{f}`" for f in dict.fromkeys(["name", "modified", *content_type.path_fields]))
		records += len(frappe.db.sql(f"select {fields} from `tab{doctype}`", as_list=True))
	queried = time.perf_counter()
	return {
		"find_sort_s": listed - started,
		"sql_s": queried - listed,
		"seconds": queried - started,
		"records": records,
	}


class ImportRun(Run):
	"""bench_publish's run (moto, the worker, settings, cleanup) with this benchmark's phases."""

	def __init__(self, args: argparse.Namespace, bench: Path, site: str, workdir: Path):
		super().__init__(args, bench, site, workdir)
		self.bucket = f"bench-import-{frappe.generate_hash(length=8).lower()}"
		self.cdn_base = f"{self.moto.url}/{self.bucket}/{KEY_PREFIX}"
		self.reports: list[str] = []

	def new_tag(self) -> str:
		tag = f"bi{frappe.generate_hash(length=6).lower()}"
		self.tags.append(tag)
		return tag

	def rclone_to_new_bucket(self, source: Path) -> dict:
		"""`rclone copy` of `source` into a bucket of its own on the same moto, dropped after."""
		bucket = f"bench-import-rclone-{frappe.generate_hash(length=8).lower()}"
		s3_client(self.moto).create_bucket(Bucket=bucket)
		try:
			mark = self.moto.mark()
			seconds = rclone_copy(self.moto, source, f"{bucket}/{KEY_PREFIX}")
			requests = by_method(self.moto.requests(mark, self.moto.mark()))
		finally:
			drop_bucket(self.moto, bucket)
		return {"seconds": seconds, "requests": requests}

	def publish(self, n: int) -> dict:
		"""Import with no worker, then one worker from its start until all is Synced; rclone of the
		same folder before and after."""
		counts = shape(n)
		files = counts["files"]
		if self.worker.running:
			wait_idle(self.site)
			self.worker.stop()
		if memora_jobs(self.site):
			self.settle()  # others' jobs queued since: run them now, not inside the measurement
		tag = self.new_tag()
		foreign = files_under(self.store.root)
		if foreign:
			log(f"WARNING the content folder holds {foreign} files before the import (not ours)")
		log(f"N={n}: import of {files} documents ({counts}), no worker running")
		imported = import_units(tag, n, self.args.body_kb)
		tag_rows = rows(tag)
		pending = sum(row.sync_status == "Pending" for row in tag_rows)
		self.check_settings(f"N={n} import")
		if len(tag_rows) != files or pending != files:
			raise Interference(
				f"N={n}: {len(tag_rows)} rows, {pending} Pending after an import with no worker"
			)
		# The same folder when it holds our files alone; else a copy of ours.
		source = self.store.root if not foreign else self.snapshot(tag_rows, f"{tag}-files")
		log(f"N={n}: imported in {imported['seconds']:.1f} s; rclone copy (before)")
		before = self.rclone_to_new_bucket(source)
		mark = self.moto.mark()
		since = self.worker.start()
		with TreeSampler(self.worker.process.pid) as sampler:
			ready_s = self.worker.wait_ready()
			guard = lambda: self.check_settings(f"N={n} drain")  # noqa: E731
			try:
				synced = wait_synced(
					self.site, tag, files, since, guard, timeout=4 * 3600, poll=self.args.poll
				)
			except Stalled as e:
				return self.stalled(e, tag, mark, since, **counts, **{"import": imported})
		end = self.moto.mark()
		self.check_settings(f"N={n} drain")
		if synced["first_synced_s"] < ready_s:
			raise Interference(f"N={n}: rows Synced before our worker took jobs (someone else's drain)")
		requests = self.moto.requests(mark, end)
		ours = by_method(requests, f"/{self.bucket}/{KEY_PREFIX}/")
		tag_rows = rows(tag)
		mismatched = bucket_mismatches(self.moto, self.bucket, self.store, tag_rows)
		if mismatched:
			raise Interference(f"N={n}: {mismatched} files missing or different in our bucket")
		log(f"N={n}: all Synced {synced['seconds']:.1f} s after the worker's start; rclone copy (after)")
		after = self.rclone_to_new_bucket(source)
		rclone_s = (before["seconds"] + after["seconds"]) / 2
		result = {
			**counts,
			"completed": True,
			"bytes": sum(row.size or 0 for row in tag_rows),
			"import": imported,
			"import_s": imported["seconds"],
			"import_docs_per_s": imported["documents"] / imported["seconds"],
			"worker_ready_s": ready_s,
			"first_synced_s": synced["first_synced_s"],
			"drain_s": synced["seconds"],
			"rclone_s": [before["seconds"], after["seconds"]],
			"rclone_mean_s": rclone_s,
			"ratio": synced["seconds"] / rclone_s,
			"requests_content": ours,
			"puts_per_file": ours.get("PUT", 0) / files,
			"requests_per_file": sum(ours.values()) / files,
			"errors": sum(status >= 400 for _, _, status in requests),
			"rclone_requests": [before["requests"], after["requests"]],
			"rclone_source": "content folder" if not foreign else "copy of our files",
			"bucket_mismatches": mismatched,
			"parents_with_local_links": parents_linking(self.store, tag_rows, LOCAL_LINK),
			"rss": sampler.summary(),
			"moto_rss_mb": psutil.Process(self.moto.process.pid).memory_info().rss / MB,
		}
		log(f"N={n}: {json.dumps({k: v for k, v in result.items() if not isinstance(v, list | dict)})}")
		return {"tag": tag, **result}

	def scan_once(self, n: int, deep: bool = False, spy: bool = False) -> dict:
		"""The full scan as the nightly cron queues it, run by the worker: its report's duration and
		the wall clock until the report exists, with the worker's RSS meanwhile. Queued by hand, not
		by `nightly`, so that the kind of scan does not hang on the day of the week (a deep scan,
		which renders every record, where the app has one, only with `deep`)."""
		from memora_storage import reports, scans

		wait_idle(self.site)
		frappe.db.rollback()
		before = set(frappe.get_all(reports.DOCTYPE, pluck="name"))
		fields = [f for f in REPORT_FIELDS if f == "name" or frappe.get_meta(reports.DOCTYPE).has_field(f)]
		state = machine_state(self.moto)
		pid = self.worker.process.pid
		spied = PySpy(pid, self.workdir / f"scan-{n}.py-spy.txt") if spy else contextlib.nullcontext()
		with TreeSampler(pid, SCAN_SAMPLE_S) as sampler, spied:
			started = time.monotonic()
			if deep:
				scans.enqueue(full=True, deep=True, scope="Full")
			else:
				scans.enqueue(full=True, scope="Full")
			frappe.db.commit()
			report = None
			while report is None:
				if time.monotonic() - started > scans.FULL_SCAN_TIMEOUT:
					raise RuntimeError(f"N={n}: no health report after {scans.FULL_SCAN_TIMEOUT} s")
				if not self.worker.running:
					raise RuntimeError(f"N={n}: the worker exited during the scan")
				time.sleep(0.05)
				frappe.db.rollback()
				new = [
					r
					for r in frappe.get_all(
						reports.DOCTYPE,
						fields=fields,
					)
					if r.name not in before
				]
				report = new[0] if new else None
			wall = time.monotonic() - started
		self.reports.append(report.name)
		self.check_settings(f"N={n} scan")
		return {
			"report": report.name,
			"scope": report.scope,
			"contents_checked": report.get("contents_checked"),
			"status": report.status,
			"duration_s": report.duration_seconds,
			"wall_s": wall,
			"expected_count": report.expected_count,
			"files_count": report.files_count,
			"problems": sum(
				report[f] or 0 for f in ("missing_count", "orphaned_count", "stale_count", "invalid_count")
			),
			"summary": report.summary,
			"rss": sampler.summary(),
			"state_before": state,
			**({"py_spy": spied.summary(under="execute_job")} if spy else {}),
		}

	def scans(self, n: int, repeat: int) -> dict:
		"""Scan and anchor alternately, `repeat` times each; medians."""
		if not self.worker.running:
			self.worker.start()
			self.worker.wait_ready()
		runs, anchors = [], []
		for i in range(repeat):
			order = ("anchor", "scan") if i % 2 == 0 else ("scan", "anchor")
			for what in order:
				if what == "scan":
					runs.append(self.scan_once(n, spy=self.args.py_spy and not runs))
					log(
						f"N={n} scan {i + 1}/{repeat}: {runs[-1]['duration_s']:.2f} s in the report, "
						f"{runs[-1]['wall_s']:.2f} s wall; {runs[-1]['summary']}"
					)
				else:
					state = machine_state(self.moto)
					anchors.append({**anchor(self.store.root), "state_before": state})
					log(f"N={n} anchor {i + 1}/{repeat}: {anchors[-1]['seconds']:.2f} s")
		scan_s = statistics.median(r["duration_s"] for r in runs)
		anchor_s = statistics.median(a["seconds"] for a in anchors)
		job_peaks = [r["rss"]["job_peak_mb"] for r in runs if r["rss"]["job_peak_mb"] is not None]
		job_medians = [r["rss"]["job_median_mb"] for r in runs if r["rss"]["job_median_mb"] is not None]
		anon_peaks = [r["rss"]["job_anon_peak_mb"] for r in runs if r["rss"]["job_anon_peak_mb"] is not None]
		anon_medians = [
			r["rss"]["job_anon_median_mb"] for r in runs if r["rss"]["job_anon_median_mb"] is not None
		]
		return {
			"repeat": repeat,
			"scan_s": scan_s,
			"scan_wall_s": statistics.median(r["wall_s"] for r in runs),
			"anchor_s": anchor_s,
			"anchor_find_sort_s": statistics.median(a["find_sort_s"] for a in anchors),
			"anchor_sql_s": statistics.median(a["sql_s"] for a in anchors),
			"ratio": scan_s / anchor_s,
			"job_peak_mb": max(job_peaks) if job_peaks else None,
			"job_median_mb": statistics.median(job_medians) if job_medians else None,
			"job_anon_peak_mb": max(anon_peaks) if anon_peaks else None,
			"job_anon_median_mb": statistics.median(anon_medians) if anon_medians else None,
			"worker_peak_mb": max(r["rss"]["worker_peak_mb"] for r in runs),
			"runs": runs,
			"anchors": anchors,
		}

	def profile_scan(self, n: int, deep: bool = False) -> dict:
		"""One full (or deep) scan in this process under cProfile: where its time goes."""
		from memora_storage import scans

		wait_idle(self.site)
		profiler = cProfile.Profile()
		started = time.perf_counter()
		profiler.enable()
		name = scans.run(full=True, scope="Full", **({"deep": True} if deep else {}))
		profiler.disable()
		seconds = time.perf_counter() - started
		self.reports.append(name)
		out = io.StringIO()
		stats = pstats.Stats(profiler, stream=out)
		stats.sort_stats("cumulative").print_stats(40)
		stats.sort_stats("tottime").print_stats(25)
		(self.workdir / f"scan-{n}{'-deep' if deep else ''}.pstats.txt").write_text(out.getvalue())
		top = [
			{
				"function": f"{Path(file).name}:{line}:{func}",
				"calls": calls,
				"tottime": tottime,
				"cumtime": cumtime,
			}
			for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items()
		]
		return {
			"files": shape(n)["files"],
			"deep": deep,
			"seconds": seconds,
			"top_cumulative": sorted(top, key=lambda t: -t["cumtime"])[:30],
			"top_self": sorted(top, key=lambda t: -t["tottime"])[:20],
		}

	def drop_reports(self) -> None:
		for name in self.reports:
			if frappe.db.exists("Content Health Report", name):
				frappe.delete_doc("Content Health Report", name, force=True, ignore_permissions=True)
		frappe.db.commit()
		self.reports.clear()


# Report -------------------------------------------------------------------------------------------


def _mb(value: float | None) -> float | str:
	return "" if value is None else round(value)


def _r(value: float | None, digits: int) -> float | str:
	return "" if value is None else round(value, digits)


def report(results: dict) -> str:
	lines = []
	for size in results["sizes"]:
		p, s = size["publish"], size.get("scan") or {}
		drain_rss = p.get("rss") or {}
		lines.append(
			[
				f"{p['units']:,}",
				f"{p['files']:,}",
				_r(p.get("import_s"), 1),
				_r(p.get("drain_s"), 2) if p.get("completed") else "STALLED",
				_r(p.get("rclone_mean_s"), 2),
				_r(p.get("ratio"), 2),
				_r(p.get("puts_per_file"), 3),
				_r(s.get("scan_s"), 2),
				_r(s.get("scan_wall_s"), 2),
				_r(s.get("anchor_s"), 3),
				_r(s.get("ratio"), 1),
				f"{_mb(drain_rss.get('job_peak_mb'))} / {_mb(drain_rss.get('job_median_mb'))}",
				f"{_mb(drain_rss.get('job_anon_peak_mb'))} / {_mb(drain_rss.get('job_anon_median_mb'))}",
				f"{_mb(s.get('job_peak_mb'))} / {_mb(s.get('job_median_mb'))}",
				f"{_mb(s.get('job_anon_peak_mb'))} / {_mb(s.get('job_anon_median_mb'))}",
				_mb(
					max(
						filter(None, [drain_rss.get("worker_peak_mb"), s.get("worker_peak_mb")]), default=None
					)
				),
			]
		)
	table = markdown_table(
		[
			"units",
			"files",
			"import, no worker (s)",
			"worker start → all Synced (s)",
			"rclone copy (s)",
			"ours / rclone (goal <= 1.5)",
			"PUT / file",
			"full scan (s, report)",
			"full scan (s, wall)",
			"find \\| sort + SQL (s)",
			"scan / anchor (goal <= 2)",
			"drain job RSS peak / median (MB)",
			"of it anonymous (MB)",
			"scan job RSS peak / median (MB)",
			"of it anonymous (MB)",
			"worker RSS peak (MB)",
		],
		lines,
	)
	parts = [table]
	if growth := results.get("growth"):
		parts.append(
			f"Growth from {growth['from']:,} to {growth['to']:,} units ({growth['size_x']:.1f}x the units):\n\n"
			+ markdown_table(
				["figure", f"{growth['from']:,}", f"{growth['to']:,}", "growth"],
				[
					[g["figure"], _r(g["small"], 3), _r(g["large"], 3), f"{g['x']:.2f}x"]
					for g in growth["figures"]
				],
			)
		)
	if deep := [s for s in results["sizes"] if s.get("deep")]:
		parts.append(
			markdown_table(
				[
					"units",
					"deep scan (s, report)",
					"deep scan (s, wall)",
					"deep scan job RSS peak / median (MB)",
				],
				[
					[
						f"{s['publish']['units']:,}",
						_r(s["deep"]["duration_s"], 2),
						_r(s["deep"]["wall_s"], 2),
						f"{_mb(s['deep']['rss']['job_peak_mb'])} / {_mb(s['deep']['rss']['job_median_mb'])}",
					]
					for s in deep
				],
			)
		)
	for size in results["sizes"]:
		for prof in filter(None, (size.get("profile"), size.get("profile_deep"))):
			kind = "Deep" if prof.get("deep") else "Full"
			parts.append(
				profile_table(f"{kind} scan of {prof['files']:,} files in one process under cProfile", prof)
			)
	for size in results["sizes"]:
		for run in (size.get("scan") or {}).get("runs", []):
			if spy := run.get("py_spy"):
				parts.append(
					f"Scan of {size['publish']['files']:,} files in the worker's job, py-spy: "
					f"{spy['seconds']:.2f} s sampled\n\n"
					+ markdown_table(
						["function (with what it called)", "s"],
						[[f, s] for f, s in spy["top_inclusive"][:25]],
					)
				)
	if results["interference"]:
		parts.append("Interference: " + "; ".join(results["interference"]))
	return "\n\n".join(parts)


GROWTH_FIGURES = (
	("import (s)", "publish", "import_s"),
	("worker start → all Synced (s)", "publish", "drain_s"),
	("rclone copy (s)", "publish", "rclone_mean_s"),
	("ours / rclone", "publish", "ratio"),
	("PUT / file", "publish", "puts_per_file"),
	("full scan (s)", "scan", "scan_s"),
	("find \\| sort + SQL (s)", "scan", "anchor_s"),
	("scan / anchor", "scan", "ratio"),
	("drain job RSS peak (MB)", "drain_rss", "job_peak_mb"),
	("drain job RSS median (MB)", "drain_rss", "job_median_mb"),
	("drain job anonymous RSS peak (MB)", "drain_rss", "job_anon_peak_mb"),
	("scan job RSS peak (MB)", "scan", "job_peak_mb"),
	("scan job anonymous RSS peak (MB)", "scan", "job_anon_peak_mb"),
	("scan job RSS median (MB)", "scan", "job_median_mb"),
	("deep scan (s)", "deep", "duration_s"),
	("deep scan job RSS peak (MB)", "deep_rss", "job_peak_mb"),
)


def growth(sizes: list[dict]) -> dict | None:
	"""Each figure at the largest size over the smallest's."""
	done = [s for s in sizes if s["publish"].get("completed") and s.get("scan")]
	if len(done) < 2:
		return None
	small, large = done[0], done[-1]

	def value(size: dict, part: str, key: str) -> float | None:
		if part.endswith("_rss"):
			doc = (size.get("publish" if part == "drain_rss" else "deep") or {}).get("rss")
		else:
			doc = size.get(part)
		return (doc or {}).get(key)

	figures = []
	for label, part, key in GROWTH_FIGURES:
		a, b = value(small, part, key), value(large, part, key)
		if a and b is not None:
			figures.append({"figure": label, "small": a, "large": b, "x": b / a})
	return {
		"from": small["publish"]["units"],
		"to": large["publish"]["units"],
		"size_x": large["publish"]["units"] / small["publish"]["units"],
		"figures": figures,
	}


def goals(results: dict) -> dict:
	sizes = results["sizes"]
	done = [s for s in sizes if s["publish"].get("completed") and s.get("scan")]
	met = {
		"all_synced": bool(sizes)
		and all(s["publish"].get("completed") and not s["publish"]["bucket_mismatches"] for s in sizes),
		"scan_clean": bool(done) and all(r["problems"] == 0 for s in done for r in s["scan"]["runs"]),
		"ratio": bool(done) and all(s["publish"]["ratio"] <= GOAL_RATIO for s in done),
		"scan_ratio": bool(done) and done[-1]["scan"]["ratio"] <= GOAL_SCAN_RATIO,
	}
	flat = {}
	if (g := results.get("growth")) and g["size_x"] > 1:
		for figure in g["figures"]:
			if figure["figure"] in ("drain job RSS peak (MB)", "scan job RSS peak (MB)"):
				flat[figure["figure"]] = figure["x"] <= FLAT_GROWTH
		met["rss_flat"] = bool(flat) and all(flat.values())
	return {
		"ratio_max": GOAL_RATIO,
		"scan_ratio_max": GOAL_SCAN_RATIO,
		"rss_growth_max": FLAT_GROWTH,
		"rss_flat_judged": bool(flat),
		**{f"met_{k}": v for k, v in met.items()},
		"met": all(met.values()),
	}


def scan_only(run: "ImportRun", results: dict, repeat) -> int:
	"""--scan-only: the scans and the anchor of what the site holds, with the worker's memory."""
	from memora_storage.content_map import get_content_map

	n = sum(frappe.db.count(doctype) for doctype in get_content_map() if frappe.db.table_exists(doctype))
	scan = run.scans(n, repeat(n))
	run.quiesce()
	results["scan_only"] = {"records": n, "scan": scan}
	table = markdown_table(
		["records", "full scan (s, report)", "full scan (s, wall)", "find | sort + SQL (s)", "scan / anchor"],
		[
			[
				f"{n:,}",
				round(scan["scan_s"], 2),
				round(scan["scan_wall_s"], 2),
				round(scan["anchor_s"], 3),
				round(scan["ratio"], 2),
			]
		],
	)
	write_results("bench_import_scan", results, table)
	return 0


def main() -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	add_bench_arguments(parser)
	parser.add_argument("--sizes", default="10000,100000", help="units per run (default: %(default)s)")
	parser.add_argument(
		"--repeat", type=int, help="scans and anchors per size (default: 3, and 2 from 50,000 units)"
	)
	parser.add_argument(
		"--body-kb", default="1-30", help="Unit body sizes, KB, as bench_publish (default: %(default)s)"
	)
	parser.add_argument(
		"--poll", type=float, default=0.5, help="seconds between counts of Synced rows (default: %(default)s)"
	)
	parser.add_argument(
		"--profile",
		action="store_true",
		help="also profile one full scan per size in-process (cProfile), and one deep scan with --deep",
	)
	parser.add_argument(
		"--py-spy",
		action="store_true",
		help="also record the worker with py-spy through each size's first scan (py-spy on PATH or beside Python)",
	)
	parser.add_argument(
		"--deep",
		action="store_true",
		help="also one deep scan per size (every file read, every record rendered), where the app has it",
	)
	parser.add_argument("--quick", action="store_true", help="1,000 units, 2 scans: a smoke run")
	parser.add_argument(
		"--scan-only",
		action="store_true",
		help="only the scans against their anchor, of the content the site holds (no import, no drain)",
	)
	parser.add_argument("--moto-python", help="a Python with moto (default: see common.moto_server_command)")
	args = parser.parse_args()
	low, _, high = args.body_kb.partition("-")
	args.body_kb = (int(low), int(high or low))
	sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]

	def repeat(n: int) -> int:
		return args.repeat or (2 if args.quick or n >= 50_000 else 3)

	bench, site = open_site(parser, args)
	from memora_storage import scans

	if args.deep and "deep" not in inspect.signature(scans.enqueue).parameters:
		parser.error("--deep: this version of the app has no deep scan")
	workdir = Path(tempfile.mkdtemp(prefix="bench_import."))
	run = ImportRun(args, bench, site, workdir)
	saved: dict = {}
	results: dict = {"sizes": [], "interference": run.interference, "app_at_start": app_fingerprint()}
	started = time.monotonic()
	try:
		run.moto.start()
		create_public_bucket(run.moto, run.bucket)
		saved = current_settings()
		run.point_settings()
		log(f"moto at {run.moto.url}, bucket {run.bucket}; settling the queue")
		run.wait_quiet("settle")
		results["settle"] = run.settle()
		if args.scan_only:
			return scan_only(run, results, repeat)
		for n in sizes:
			size_started = time.monotonic()
			size = {"publish": run.attempt(f"N={n} import", lambda n=n: run.publish(n))}
			tag = size["publish"].pop("tag")
			if size["publish"]["completed"]:
				size["scan"] = run.attempt(f"N={n} scan", lambda n=n: run.scans(n, repeat(n)))
				if args.deep:
					size["deep"] = run.attempt(f"N={n} deep scan", lambda n=n: run.scan_once(n, deep=True))
					log(f"N={n} deep scan: {size['deep']['duration_s']:.2f} s in the report")
				if args.profile:
					size["profile"] = run.profile_scan(n)
					if args.deep:
						size["profile_deep"] = run.profile_scan(n, deep=True)
			run.quiesce()
			log(f"N={n}: cleaning up")
			cleanup(tag)
			run.drop_reports()
			size["seconds"] = time.monotonic() - size_started
			results["sizes"].append(size)
			log(f"N={n}: done in {size['seconds']:.0f} s")
	finally:
		run.drop_reports()
		run.close(saved)
		frappe.db.commit()
		shutil.rmtree(workdir, ignore_errors=True)

	results["app_at_end"] = app_fingerprint()
	if results["app_at_end"] != results["app_at_start"]:
		run.interference.append(
			"the installed app changed during the run (someone installed a newer checkout)"
		)
	results["seconds"] = time.monotonic() - started
	results["growth"] = growth(results["sizes"])
	results["goal"] = goals(results)
	results["waited_for_other_workers_s"] = run.waited_s
	results["filesystem"] = filesystem_of(run.store.root)
	results["body_kb"] = list(args.body_kb)
	results["rclone"] = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.split(
		"\n"
	)[0]
	write_results("bench_import", results, report(results))
	return 0


if __name__ == "__main__":
	sys.exit(main())
