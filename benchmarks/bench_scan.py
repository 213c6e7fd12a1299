"""Full health scan of 10,000 and 100,000 content files against a baseline of `find ROOT -type f | sort`
plus one SQL query of the names, side by side in one run (goal at 100k: at most 2x the baseline and
under 10 s), and the scan's peak RSS at each size.

The tree has the default layout: per 100 records 1 plan (`plans/{plan}/manifest.json`), 20 subjects
(`plans/{plan}/subjects/{subject}.json`) and 79 units (`units/{unit}.json`), small JSON files. Expected
records live in MariaDB, one table per DocType as in Frappe (temporary database `memora_bench_scan`,
dropped at the end), and reach the scan as the Frappe layer should feed them: streamed queries
(unbuffered cursor), one ExpectedFile per row, paths formatted from the rules. A few faults of each kind are planted, and the reports must
list exactly them, so the timed scan does its real work.

The scan reads and parses every file (invalid JSON is one of its findings) where the baseline only lists
names, so the figures say what that thoroughness costs. Both run with a warm page cache, alternating
which goes first. Peak RSS is measured in a fresh process per size that only runs the query + scan, as
its VmHWM: Linux keeps `ru_maxrss` across fork and exec, so a child's `ru_maxrss` starts at its parent's
(this script's) size; it is recorded too, for comparison.

    python -m benchmarks.bench_scan [--dir DIR] [--sizes 10000,100000] [--repeat 5]
                                    [--db-host 127.0.0.1] [--db-port 3306] [--db-user root] [--db-password '']

Needs a MariaDB (or MySQL) server and PyMySQL (`pip install -e '.[benchmarks]'`; `./run-tests`
installs it in .venv). The login must be allowed to create and drop the database `memora_bench_scan`;
each --db-* option defaults to its environment variable (MEMORA_DB_HOST, MEMORA_DB_PORT,
MEMORA_DB_USER, MEMORA_DB_PASSWORD), else to 127.0.0.1, 3306, root and an empty password, which only
fit a local test server. The password is passed to the child process through the environment, never
on its command line.
"""

import argparse
import datetime
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
	sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pymysql
import pymysql.cursors

from benchmarks.common import RESULTS_DIR, filesystem_of, markdown_table, write_results
from memora_storage.utils import canonical
from memora_storage.utils.scan import ExpectedFile, HealthReport, NaiveTimes, full_scan, incremental_scan

DATABASE = "memora_bench_scan"
# The MariaDB login, set by main() from the --db-* options (defaults: the MEMORA_DB_* variables).
DB: dict = {"charset": "utf8mb4"}
DB_DEFAULTS = {"host": "127.0.0.1", "port": "3306", "user": "root", "password": ""}
# The default content map's path rules (memora_storage.content_map.DEFAULT_CONTENT_MAP, which needs Frappe).
PATH_RULES = {
	"Plan": "plans/{name}/manifest.json",
	"Subject": "plans/{plan}/subjects/{name}.json",
	"Unit": "units/{name}.json",
}
CHUNK = 10_000  # rows per query, as json_rows.chunks reads them
FAULTS = 50  # of each kind: missing, orphaned, invalid, stale
GOAL_RATIO = 2.0
GOAL_SECONDS = 10.0


def db_table(doctype: str, size: int) -> str:
	return f"tab{doctype}_{size}"


def generate(root: Path, size: int, modified: datetime.datetime) -> list[tuple]:
	"""Write `size` content files under `root`; return their rows (doctype, name, plan, modified)."""
	plans, subjects = size // 100, size // 5
	rows = []
	for p in range(plans):
		plan = f"PLAN-{p:05d}"
		rows.append(("Plan", plan, None, modified))
		rows.extend(("Subject", f"SUBJ-{s:06d}", plan, modified) for s in range(p * 20, p * 20 + 20))
		(root / "plans" / plan / "subjects").mkdir(parents=True)
	rows.extend(("Unit", f"UNIT-{u:06d}", None, modified) for u in range(size - plans - subjects))
	(root / "units").mkdir(parents=True)
	for doctype, name, plan, _ in rows:
		data = canonical.dumps(
			{
				"doctype": doctype,
				"name": name,
				"title": f"الوحدة {name}: الأعداد والعمليات",
				"modified": str(modified),
				"url": f"https://cdn.example.com/{PATH_RULES[doctype].format(name=name, plan=plan)}",
			}
		)
		with open(root / PATH_RULES[doctype].format(name=name, plan=plan), "wb") as f:
			f.write(data)
	return rows


def plant_faults(root: Path, rows: list[tuple], seed: int) -> dict[str, set[str]]:
	"""FAULTS files of each kind, on distinct records; returns what the report must list."""
	chosen = random.Random(seed).sample(rows, 3 * FAULTS)
	paths = [PATH_RULES[doctype].format(name=name, plan=plan) for doctype, name, plan, _ in chosen]
	faults = {"missing": set(paths[:FAULTS]), "invalid": set(paths[FAULTS : 2 * FAULTS])}
	faults["stale"] = set(paths[2 * FAULTS :])
	# Half the invalid files are emptied (metadata shows it), half cut short (only reading shows it).
	faults["empty"] = set(paths[FAULTS : FAULTS + FAULTS // 2])
	for path in faults["missing"]:
		(root / path).unlink()
	for path in faults["invalid"]:
		(root / path).write_bytes(b"" if path in faults["empty"] else (root / path).read_bytes()[:40])
	long_ago = time.time() - 30 * 86400
	for path in faults["stale"]:
		os.utime(root / path, (long_ago, long_ago))
	faults["orphaned"] = set()
	for i in range(FAULTS):
		path = f"units/ORPHAN-{i:03d}.json" if i % 2 else f"plans/PLAN-GONE-{i:03d}/manifest.json"
		(root / path).parent.mkdir(parents=True, exist_ok=True)
		(root / path).write_bytes(b"{}\n")
		os.utime(root / path, (long_ago, long_ago))
		faults["orphaned"].add(path)
	return faults


def connect(database: str | None = DATABASE) -> pymysql.connections.Connection:
	return pymysql.connect(database=database, **DB)


def load_tables(size: int, rows: list[tuple]) -> None:
	"""One table per DocType, as in Frappe: `name` primary key, the parent link, `modified`."""
	with connect() as conn, conn.cursor() as cur:
		for doctype in PATH_RULES:
			parent = "plan VARCHAR(140), " if doctype == "Subject" else ""
			cur.execute(
				f"CREATE TABLE `{db_table(doctype, size)}` (name VARCHAR(140) PRIMARY KEY, {parent}"
				"modified DATETIME(6), INDEX (modified)) CHARACTER SET utf8mb4"
			)
			columns = "name, plan, modified" if parent else "name, modified"
			values = [row[1:] if parent else (row[1], row[3]) for row in rows if row[0] == doctype]
			insert = f"INSERT INTO `{db_table(doctype, size)}` ({columns}) VALUES ({', '.join(['%s'] * len(values[0]))})"
			for start in range(0, len(values), 5000):
				cur.executemany(insert, values[start : start + 5000])
		conn.commit()


def expected_from_db(conn: pymysql.connections.Connection, size: int) -> Iterator[ExpectedFile]:
	"""Records as the Frappe layer feeds them (`memora_storage.json_rows.chunks`, `scans.ExpectedRecords`):
	chunks of 10,000 rows as JSON arrays built by MariaDB, paths formatted from the rules, `modified`
	read once per minute of text (`NaiveTimes`)."""
	times = NaiveTimes(None)
	for doctype, rule in PATH_RULES.items():
		columns = ("name", "plan", "modified") if doctype == "Subject" else ("name", "modified")
		fields = ", ".join(columns)
		last = ""
		while True:
			with conn.cursor() as cur:
				cur.execute(
					f"""SET STATEMENT group_concat_max_len=4294967295 FOR
					select json_arrayagg(json_array({fields}) order by name) from (select {fields}
					from `{db_table(doctype, size)}` where name > %s order by name limit %s) chunk""",
					(last, CHUNK),
				)
				data = cur.fetchone()[0]
			chunk = json.loads(data) if data else []
			for row in chunk:
				values = dict(zip(columns, row, strict=True))
				yield ExpectedFile(
					rule.format(**values), times(values["modified"]), None, doctype, values["name"]
				)
			if len(chunk) < CHUNK:
				break
			last = chunk[-1][0]


def time_query(size: int) -> float:
	"""The records query alone, drained without scanning: the share of the scan's time spent in the DB."""
	started = time.perf_counter()
	with connect() as conn:
		for _ in expected_from_db(conn, size):
			pass
	return time.perf_counter() - started


def time_baseline(root: Path, size: int) -> dict[str, float]:
	"""What listing the names costs at the least: the files, sorted, and the records' names."""
	started = time.perf_counter()
	listing = subprocess.run(
		f"find {root} -type f | sort", shell=True, check=True, capture_output=True
	).stdout
	listed = time.perf_counter()
	with connect() as conn, conn.cursor() as cur:
		cur.execute(
			" UNION ALL ".join(f"SELECT name FROM `{db_table(doctype, size)}`" for doctype in PATH_RULES)
		)
		names = cur.fetchall()
	queried = time.perf_counter()
	assert listing.count(b"\n") >= size - FAULTS and len(names) == size
	return {"find_sort": listed - started, "sql": queried - listed, "total": queried - started}


def time_scan(root: Path, size: int, faults: dict[str, set[str]], read_files: bool) -> float:
	started = time.perf_counter()
	with connect() as conn:
		report = full_scan(root, expected_from_db(conn, size), read_files=read_files)
	elapsed = time.perf_counter() - started
	check(report, faults, read_files)
	return elapsed


def check(report: HealthReport, faults: dict[str, set[str]], read_files: bool) -> None:
	"""The report lists exactly the planted faults that its kind of scan can see."""
	expected = {name: faults[name] for name in ("missing", "stale", "orphaned")}
	expected["invalid"] = faults["invalid"] if read_files else faults["empty"]
	found = {name: {f.path for f in getattr(report, name)} for name in ("missing", "invalid", "stale")}
	found["orphaned"] = set(report.orphaned)
	assert found == expected, {name: len(found[name] ^ expected[name]) for name in expected}
	assert not report.errors


def time_incremental(root: Path, size: int) -> dict[str, float]:
	"""The hourly scan: all records streamed, 1% of the units changed since the last scan, a sample of 1,000."""
	unit = db_table("Unit", size)
	with connect() as conn, conn.cursor() as cur:
		cur.execute(f"SELECT MAX(modified) FROM `{unit}`")
		since = cur.fetchone()[0] + datetime.timedelta(seconds=1)
		cur.execute(f"UPDATE `{unit}` SET modified = %s ORDER BY name LIMIT %s", (since, size // 100))
		conn.commit()
		started = time.perf_counter()
		report = incremental_scan(root, expected_from_db(conn, size), since=since, sample=1000, seed=1)
		elapsed = time.perf_counter() - started
	return {"seconds": elapsed, "checked": report.checked, "folders": report.folders}


def child(root: str, size: int) -> None:
	"""Run one query + full scan in this fresh process and print its figures, peak RSS included."""
	start = memory_kb("VmRSS")
	started = time.perf_counter()
	with connect() as conn:
		report = full_scan(root, expected_from_db(conn, size), read_files=False)
	elapsed = time.perf_counter() - started
	figures = {
		"rss_start_kb": start,
		"rss_peak_kb": memory_kb("VmHWM"),
		"ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
		"seconds": elapsed,
	}
	print(json.dumps({**figures, **report.to_dict(0)}))


def memory_kb(field: str) -> int:
	"""A figure (kB) of this process image from /proc/self/status: VmRSS now, VmHWM its peak."""
	with open("/proc/self/status", encoding="ascii") as f:
		for line in f:
			if line.startswith(field + ":"):
				return int(line.split()[1])
	raise KeyError(field)


def measure_rss(root: Path, size: int) -> dict:
	login = {f"MEMORA_DB_{key.upper()}": str(DB[key]) for key in DB_DEFAULTS}
	out = subprocess.run(
		[sys.executable, "-m", "benchmarks.bench_scan", "--child", str(root), "--sizes", str(size)],
		cwd=Path(__file__).resolve().parent.parent,
		env={**os.environ, **login},
		check=True,
		capture_output=True,
		text=True,
	).stdout
	return json.loads(out)


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--dir", help="where to build the trees (default: a temp folder beside the results)")
	parser.add_argument("--sizes", default="10000,100000")
	parser.add_argument("--repeat", type=int, default=5)
	for key, default in DB_DEFAULTS.items():
		variable = f"MEMORA_DB_{key.upper()}"
		parser.add_argument(
			f"--db-{key}",
			type=int if key == "port" else str,
			default=os.environ.get(variable, default),
			help=f"MariaDB {key} (default: {variable}, else {default!r})",
		)
	parser.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
	args = parser.parse_args(argv)
	if args.repeat < 1:
		parser.error("--repeat must be at least 1")
	DB.update({key: getattr(args, f"db_{key}") for key in DB_DEFAULTS})
	sizes = [int(size) for size in args.sizes.split(",")]
	if args.child:
		child(args.child, sizes[0])
		return 0

	try:
		connect(None).close()
	except pymysql.MySQLError as e:
		print(
			f"cannot log in to MariaDB at {DB['host']}:{DB['port']} as {DB['user']!r}: {e}; "
			"set --db-host/--db-port/--db-user/--db-password or MEMORA_DB_HOST/_PORT/_USER/_PASSWORD",
			file=sys.stderr,
		)
		return 2
	base = Path(args.dir) if args.dir else RESULTS_DIR / "tmp"
	base.mkdir(parents=True, exist_ok=True)
	work = Path(tempfile.mkdtemp(prefix="bench_scan.", dir=base))
	with connect(None) as conn, conn.cursor() as cur:
		cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
		cur.execute(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4")
	runs = []
	try:
		for size in sizes:
			root = work / str(size)
			started = time.perf_counter()
			rows = generate(root, size, datetime.datetime.now() - datetime.timedelta(days=1))
			load_tables(size, rows)
			faults = plant_faults(root, rows, seed=size)
			print(f"{size}: tree and table built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
			baselines, scans, deep_scans, queries = [], [], [], []
			for i in range(args.repeat + 1):  # the first round warms the caches and is not counted
				if i % 2:
					baseline = time_baseline(root, size)
					scan = time_scan(root, size, faults, read_files=False)
				else:
					scan = time_scan(root, size, faults, read_files=False)
					baseline = time_baseline(root, size)
				deep = time_scan(root, size, faults, read_files=True)
				query = time_query(size)
				if i:
					baselines.append(baseline)
					scans.append(scan)
					deep_scans.append(deep)
					queries.append(query)
			rss = measure_rss(root, size)
			assert rss["counts"]["missing"] == rss["counts"]["orphaned"] == FAULTS
			runs.append(
				{
					"size": size,
					"files": rss["counts"]["files"],
					"baseline_s": {
						key: statistics.median(b[key] for b in baselines)
						for key in ("find_sort", "sql", "total")
					},
					"scan_s": {"median": statistics.median(scans), "min": min(scans), "max": max(scans)},
					"files_read_scan_s": statistics.median(deep_scans),
					"records_query_s": statistics.median(queries),
					"incremental": time_incremental(root, size),
					"rss": {
						"start_mb": rss["rss_start_kb"] / 1024,
						"peak_mb": rss["rss_peak_kb"] / 1024,
						"growth_mb": (rss["rss_peak_kb"] - rss["rss_start_kb"]) / 1024,
						"ru_maxrss_mb": rss["ru_maxrss_kb"] / 1024,
						"fresh_process_scan_s": rss["seconds"],
					},
				}
			)
			shutil.rmtree(root)
	finally:
		with connect(None) as conn, conn.cursor() as cur:
			cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
		shutil.rmtree(work, ignore_errors=True)

	rows = []
	for run in runs:
		run["ratio"] = run["scan_s"]["median"] / run["baseline_s"]["total"]
		rows.append(
			[
				f"{run['size']:,}",
				round(run["baseline_s"]["find_sort"], 3),
				round(run["baseline_s"]["sql"], 3),
				round(run["baseline_s"]["total"], 3),
				round(run["records_query_s"], 3),
				round(run["scan_s"]["median"], 3),
				round(run["ratio"], 2),
				round(run["files_read_scan_s"], 3),
				round(run["files_read_scan_s"] / run["baseline_s"]["total"], 2),
				round(run["incremental"]["seconds"], 3),
				round(run["rss"]["peak_mb"], 1),
				round(run["rss"]["growth_mb"], 1),
			]
		)
	table = markdown_table(
		[
			"records",
			"find + sort s",
			"SQL names s",
			"baseline s",
			"records query s",
			"full scan s (query + scan)",
			"scan / baseline",
			"files read s",
			"files read / baseline",
			"hourly scan s (1% changed + 1k sample)",
			"scan peak RSS MB",
			"RSS growth MB",
		],
		rows,
	)
	largest = runs[-1]
	goal_met = largest["ratio"] <= GOAL_RATIO and largest["scan_s"]["median"] < GOAL_SECONDS
	write_results(
		"bench_scan",
		{
			"filesystem": filesystem_of(base),
			"goal": {
				"ratio_max": GOAL_RATIO,
				"seconds_max": GOAL_SECONDS,
				"at": largest["size"],
				"met": goal_met,
			},
			"repeat": args.repeat,
			"faults_planted_per_kind": FAULTS,
			"runs": runs,
		},
		table,
	)
	print(
		f"goal at {largest['size']:,}: scan <= {GOAL_RATIO}x baseline and < {GOAL_SECONDS:g} s: "
		f"{'met' if goal_met else 'NOT met'} ({largest['ratio']:.2f}x, {largest['scan_s']['median']:.2f} s)"
	)
	return 0


if __name__ == "__main__":
	sys.exit(main())
