"""The app's cost on a content save: the same import-and-edit script on two sites of one bench, one with
this app and one with Frappe only, side by side in one run.

After one untimed save on each site (a fresh process's first save loads the modules and caches),
the script inserts 1 Plan, its Subjects and their Units through `frappe.get_doc(...).insert()`,
committing once per Subject, as a data import does; then edits one Unit in five through
`doc.save()`, again committing once per Subject. On the app's site the CDN is on (a bucket no
worker uploads to: rows and drain requests are queued, nothing competes for the CPU), so every
commit writes its files, rows and delivery marks before it returns. The goal (issue 19): with the
app, each phase takes at most 1.5 times as long as on the bare site.

Then a Desk save: on each site a Subject of `--desk-units` Units; one gunicorn worker serving both
sites loads a random Unit as the form does and saves it through `frappe.desk.form.save.savedocs`,
the two sites alternating; p50 and p99 of the save request (goal: at most 1.5 times the bare site's).
Twice: with the Unit's version local only (its Subject's listing does not change, so only the Unit's
file is written), and with the Unit, its Subject and the manifest on the CDN before each save, as
drains leave them (the save takes the Unit off the CDN: the Subject's link to it and the manifest's
link to the Subject move here).

Sizes name the units: 500 (10 subjects of 50), 2000 (2 of 1,000), 10000 (10 of 1,000), 100000
(100 of 1,000). Both sites run the script at once in lockstep, one process each: every step (one
commit) runs on one site then the other, in alternating order, so a neighbour's burst of load on a
shared machine hits both alike. Each size runs `--repeat` times (100000 once); the ratio is the
median of the runs' ratios, and each run's is shown. `--profile SIZE` also runs the app site's
script once under pyinstrument and records where its time went.

    cd BENCH/sites && ../env/bin/python /path/to/benchmarks/bench_save_cost.py \\
        --bench BENCH --site APP_SITE --bare-site BARE_SITE [--sizes 500,2000] [--repeat 3]

(or `python -m benchmarks --only save_cost --bench BENCH --site APP_SITE` with MEMORA_BARE_SITE).
What the runs made is deleted at the end, all at once, never between two runs: on ext4 without a
journal the kernel will not reuse an inode freed in the last 60 s (300 s while its inode-table block
is dirty) and steps over each such inode when it allocates one (fs/ext4/ialloc.c, recently_deleted),
so a run right after deleting its predecessor's thousands of files paid up to 1 ms for each file it
created: a cost of the benchmark's cleanup, not of a save.
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe

from benchmarks.common import add_bench_arguments, bench_and_site, markdown_table, percentile, write_results
from memora_storage.demo import ensure_content_doctypes

SIZES = {500: (10, 50), 2000: (2, 1000), 10000: (10, 1000), 100000: (100, 1000)}
EDIT_EVERY = 5
GOAL_RATIO = 1.5
WORDS = "force energy cell atom wave light sound heat motion matter orbit plant water river".split()
CDN_SETTINGS = {
	"enable_cdn": 1,
	"cdn_base_url": "http://127.0.0.1:9/bench-save-cost",
	"bucket": "bench-save-cost",
	"endpoint_url": "http://127.0.0.1:9",
	"local_fallback_mode": 0,
	"auto_failover": 0,
	"min_free_disk_percent": 0,
}


def log(message: str) -> None:
	print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The script on one site (a child process) ---------------------------------------------------------


def connect(site: str) -> bool:
	"""Connect to `site`; True if this app is installed there."""
	frappe.init(site=site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	return "memora_storage" in frappe.get_installed_apps()


def body(rng: random.Random, size: int) -> str:
	return " ".join(rng.choices(WORDS, k=size // 6))


def insert_plan(tag: str, name: str = "p") -> int:
	frappe.get_doc({"doctype": "Plan", "name": f"{tag}-{name}", "title": "Plan"}).insert()
	frappe.db.commit()
	return 1


def insert_units(tag: str, s: int, units: int, rng: random.Random, body_bytes: int) -> int:
	"""Subject `s` and its Units, committed at once, as an import does."""
	subject = f"{tag}-s{s:03}"
	frappe.get_doc(
		{"doctype": "Subject", "name": subject, "title": f"Subject {s}", "plan": f"{tag}-p"}
	).insert()
	for u in range(units):
		frappe.get_doc(
			{
				"doctype": "Unit",
				"name": f"{subject}-u{u:04}",
				"title": f"Unit {u}",
				"subject": subject,
				"body": body(rng, body_bytes),
			}
		).insert()
	frappe.db.commit()
	return 1 + units


def edit_units(tag: str, s: int, units: int, rng: random.Random, body_bytes: int) -> int:
	"""One Unit in five of Subject `s` saved again with a new body, committed at once."""
	edits = 0
	for u in range(0, units, EDIT_EVERY):
		doc = frappe.get_doc("Unit", f"{tag}-s{s:03}-u{u:04}")
		doc.body = body(rng, body_bytes)
		doc.save()
		edits += 1
	frappe.db.commit()
	return edits


def steps(subjects: int) -> list[tuple[str, int]]:
	"""The script as steps, each ending in a commit: a plan saved untimed (a fresh process's first save
	loads modules and caches on both sites; an import or a Desk worker pays that once, not per save),
	the plan, each subject's import, each one's edits."""
	return [
		("warm", 0),
		("plan", 0),
		*(("insert", s) for s in range(subjects)),
		*(("edit", s) for s in range(subjects)),
	]


def run_step(tag: str, step: str, s: int, units: int, rng: random.Random, body_bytes: int) -> dict:
	cpu, started = time.process_time(), time.perf_counter()
	if step == "warm":
		count = insert_plan(tag, "warm")
	elif step == "plan":
		count = insert_plan(tag)
	elif step == "insert":
		count = insert_units(tag, s, units, rng, body_bytes)
	else:
		count = edit_units(tag, s, units, rng, body_bytes)
	return {"count": count, "s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def serve_steps(args: argparse.Namespace) -> None:
	"""Run the steps the runner sends on stdin, one JSON line each, answering with each one's times."""
	rng = random.Random(7)
	for line in sys.stdin:
		request = json.loads(line)
		if request["step"] == "quit":
			return
		done = run_step(args.tag, request["step"], request["s"], request["units"], rng, args.body_bytes)
		print(json.dumps(done), flush=True)


def insert_subject(tag: str, units: int, body_bytes: int) -> dict:
	"""A Plan with one Subject of `units` Units, for the Desk saves; their names."""
	rng = random.Random(11)
	frappe.get_doc({"doctype": "Plan", "name": f"{tag}-p", "title": "Plan"}).insert()
	subject = f"{tag}-s000"
	frappe.get_doc({"doctype": "Subject", "name": subject, "title": "Subject", "plan": f"{tag}-p"}).insert()
	names = [f"{subject}-u{u:04}" for u in range(units)]
	for u, name in enumerate(names):
		frappe.get_doc(
			{
				"doctype": "Unit",
				"name": name,
				"title": f"Unit {u}",
				"subject": subject,
				"body": body(rng, body_bytes),
			}
		).insert()
	frappe.db.commit()
	return {"units": names}


def serve_marks(tag: str) -> None:
	"""On the app's site: for each Unit named on stdin, leave its file, its Subject's and the manifest
	as drains leave them, then answer: each Synced and on the CDN at its current version, and each
	parent rendered after its child landed, so it links to the child there."""
	from memora_storage import content_files, delivery_hash, publishing, settings
	from memora_storage.utils import canonical

	store = settings.content_store()
	for line in sys.stdin:
		unit = json.loads(line)["unit"]
		paths = [
			f"units/{unit}.json",
			f"plans/{tag}-p/subjects/{tag}-s000.json",
			f"plans/{tag}-p/manifest.json",
		]
		for level, path in enumerate(paths):
			if level:
				publishing.write_parents([path])  # as the drain does once the level below landed
				frappe.db.commit()
			sha = canonical.sha256(store.read(path))
			frappe.db.set_value(
				"Content File",
				content_files.row_name(path),
				{"sync_status": "Synced", "synced_sha256": sha},
				update_modified=False,
			)
			delivery_hash.mark({path: delivery_hash.state(True, sha)})
			frappe.db.commit()
		print(json.dumps({"marked": paths}), flush=True)


def check_files(tag: str) -> dict:
	"""On the app's site: every document has its row, Written, and its file."""
	from memora_storage import settings

	rows = frappe.db.sql(
		"""select local_status, count(*) from `tabContent File`
		where path like %(units)s or path like %(plans)s group by local_status""",
		{"units": f"units/{tag}-%", "plans": f"plans/{tag}-%"},
	)
	store = settings.content_store()
	on_disk = sum(1 for _ in (store.root / "units").glob(f"{tag}-*.json"))
	on_disk += sum(1 for _ in (store.root / "plans").glob(f"{tag}-*/**/*.json"))
	return {"rows": dict(rows), "files": on_disk}


def cleanup(tag: str, with_app: bool) -> None:
	"""Delete what one run made: documents, and on the app's site files, backups, rows and marks."""
	for doctype in ("Unit", "Subject", "Plan"):
		frappe.db.sql(f"delete from `tab{doctype}` where name like %s", (f"{tag}-%",))
	frappe.db.commit()
	if not with_app:
		return
	import shutil

	from memora_storage import delivery_hash, settings

	store = settings.content_store()
	where = "path like %(units)s or path like %(plans)s"
	values = {"units": f"units/{tag}-%", "plans": f"plans/{tag}-%"}
	paths = frappe.db.sql_list(f"select path from `tabContent File` where {where}", values)
	for root in (store.root, store.private_root / "prev"):
		for file in (root / "units").glob(f"{tag}-*"):
			file.unlink()
		for folder in (root / "plans").glob(f"{tag}-*"):
			shutil.rmtree(folder)
	frappe.db.sql(f"delete from `tabContent File` where {where}", values)
	frappe.db.commit()
	for start in range(0, len(paths), 10000):
		delivery_hash.forget(paths[start : start + 10000])


def set_cdn(values: dict | None) -> dict:
	"""Save CDN Settings (the app's site); returns the values they had."""
	doc = frappe.get_single("CDN Settings")
	before = {field: doc.get(field) for field in CDN_SETTINGS}
	if values is not None:
		doc.update(values)
		doc.save(ignore_permissions=True)
		frappe.db.commit()
	return before


def child(args: argparse.Namespace) -> None:
	with_app = connect(args.site)
	result: dict = {"site": args.site, "with_app": with_app}
	if args.action == "setup":
		ensure_content_doctypes(module="Custom")
		if with_app:
			from memora_storage.content_map import index_parent_fields

			index_parent_fields()  # as a migrate does where the content DocTypes exist
			result["cdn_before"] = set_cdn(CDN_SETTINGS)
	elif args.action == "restore":
		set_cdn(json.loads(args.restore))
	elif args.action == "cleanup":
		cleanup(args.tag, with_app)
	elif args.action == "desk-setup":
		result.update(insert_subject(args.tag, args.units, args.body_bytes))
	elif args.action == "marks":
		serve_marks(args.tag)
	elif args.action == "serve":
		serve_steps(args)
		if with_app:
			result["check"] = check_files(args.tag)
	elif args.action == "profile":
		from pyinstrument import Profiler

		subjects, units = SIZES[args.units]
		rng = random.Random(7)
		profiler = Profiler(interval=0.0005)
		profiler.start()
		for step, s in steps(subjects):
			run_step(args.tag, step, s, units, rng, args.body_bytes)
		profiler.stop()
		result["profile"] = profiler.output_text(unicode=False, color=False, show_all=False)[:60000]
	frappe.destroy()
	print(json.dumps(result, default=str))


# The runner ---------------------------------------------------------------------------------------


def run_child(
	site: str, action: str, tag: str = "", units: int = 0, body_bytes: int = 0, restore=None
) -> dict:
	command = [sys.executable, os.path.abspath(__file__), "--child", action, "--site", site]
	command += ["--tag", tag, "--units", str(units), "--body-bytes", str(body_bytes)]
	if restore is not None:
		command += ["--restore", json.dumps(restore, default=str)]
	done = subprocess.run(command, capture_output=True, text=True, check=False)
	if done.returncode:
		raise RuntimeError(f"{site} {action} failed:\n{done.stderr[-4000:]}")
	return json.loads(done.stdout.strip().splitlines()[-1])


class Gunicorn:
	"""One gunicorn worker (sync, as production runs it) serving both sites, chosen per request by header:
	the saves of both sites are timed in the same process, alternating."""

	def __init__(self, bench: Path):
		self.bench = bench
		with socket.socket() as probe:
			probe.bind(("127.0.0.1", 0))
			self.port = probe.getsockname()[1]
		self.url = f"http://127.0.0.1:{self.port}"
		self.process: subprocess.Popen | None = None

	def __enter__(self) -> "Gunicorn":
		# `-m`: a bench's env/bin/gunicorn may name another bench's Python (an env copied from another bench).
		command = [
			str(self.bench / "env" / "bin" / "python"),
			"-m",
			"gunicorn",
			"-b",
			f"127.0.0.1:{self.port}",
		]
		command += ["-w", "1"]
		command += ["-t", "300", "--preload", "frappe.app:application"]
		self.process = subprocess.Popen(
			command, cwd=self.bench / "sites", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
		)
		deadline = time.monotonic() + 120
		while time.monotonic() < deadline:
			try:
				urllib.request.urlopen(f"{self.url}/api/method/ping", timeout=5)
				return self
			except urllib.error.HTTPError:  # it answers (no site named): up
				return self
			except OSError:
				time.sleep(0.5)
		self.__exit__()  # `with` calls it only once entered
		raise RuntimeError("gunicorn did not answer within 120 s")

	def __exit__(self, *exc) -> None:
		if self.process:
			self.process.terminate()
			self.process.wait(30)


def desk_session(server: Gunicorn, site: str, password: str):
	"""A logged-in requests session for `site` as Administrator."""
	import requests

	session = requests.Session()
	session.headers["X-Frappe-Site-Name"] = site
	answer = session.post(f"{server.url}/api/method/login", data={"usr": "Administrator", "pwd": password})
	answer.raise_for_status()
	return session


def desk_save(server: Gunicorn, session, name: str, text: str) -> float:
	"""Load a Unit as the form does, change its body, save it as the form does: seconds of the save."""
	loaded = session.get(
		f"{server.url}/api/method/frappe.desk.form.load.getdoc", params={"doctype": "Unit", "name": name}
	)
	loaded.raise_for_status()
	doc = loaded.json()["docs"][0]
	doc["body"] = text
	started = time.perf_counter()
	saved = session.post(
		f"{server.url}/api/method/frappe.desk.form.save.savedocs",
		data={"doc": json.dumps(doc), "action": "Save"},
	)
	seconds = time.perf_counter() - started
	saved.raise_for_status()
	return seconds


def measure_desk(
	args: argparse.Namespace, bench: Path, app_site: str, bare_site: str, made: list[tuple[str, str]]
) -> dict:
	"""p50 and p99 of a Desk save of one Unit in a Subject of `--desk-units` Units, both sites alternating,
	in two cases: the Unit's current version is local only (not uploaded yet, or the CDN is off), so
	its Subject's listing cannot change; and it is on the CDN, as after a drain, so the save takes it
	off the CDN and its Subject and the manifest are rendered again to link to it locally."""
	tag = f"scd{os.getpid() % 10000}"
	sites = {"bare": bare_site, "app": app_site}
	names = {}
	for kind, site in sites.items():
		run_child(site, "cleanup", tag)
		made.append((site, tag))
		names[kind] = run_child(site, "desk-setup", tag, args.desk_units, args.body_bytes)["units"]
	cases = {}
	rng = random.Random(5)
	marker = subprocess.Popen(
		[sys.executable, os.path.abspath(__file__), "--child", "marks", "--site", app_site, "--tag", tag],
		stdin=subprocess.PIPE,
		stdout=subprocess.PIPE,
		text=True,
	)
	try:
		with Gunicorn(bench) as server:
			sessions = {kind: desk_session(server, site, args.admin_password) for kind, site in sites.items()}
			for case in ("local", "cdn"):
				seconds: dict[str, list[float]] = {"bare": [], "app": []}
				for i in range(args.desk_saves + 5):
					order = ["bare", "app"] if i % 2 == 0 else ["app", "bare"]
					unit = rng.randrange(args.desk_units)
					if case == "cdn":  # outside the timing, as a drain between two saves would
						marker.stdin.write(json.dumps({"unit": names["app"][unit]}) + "\n")
						marker.stdin.flush()
						json.loads(marker.stdout.readline())
					text = body(rng, args.body_bytes)
					for kind in order:
						took = desk_save(server, sessions[kind], names[kind][unit], text)
						if i >= 5:  # the first saves warm the worker's caches
							seconds[kind].append(took)
				cases[case] = desk_stats(seconds)
				log(f"Desk save, unit {case}: {cases[case]}")
	finally:
		marker.stdin.close()
		marker.wait(60)
	return {**cases["local"], "on_cdn": cases["cdn"], "units_in_subject": args.desk_units}


def desk_stats(seconds: dict[str, list[float]]) -> dict:
	stats = {
		kind: {
			"p50_ms": round(percentile(values, 50) * 1000, 1),
			"p99_ms": round(percentile(values, 99) * 1000, 1),
			"saves": len(values),
		}
		for kind, values in seconds.items()
	}
	stats["ratio_p50"] = round(stats["app"]["p50_ms"] / stats["bare"]["p50_ms"], 2)
	stats["ratio_p99"] = round(stats["app"]["p99_ms"] / stats["bare"]["p99_ms"], 2)
	return stats


def load_average() -> list[float]:
	return [round(value, 2) for value in os.getloadavg()]


class Script:
	"""The script running on one site in a child process, step by step as the runner asks."""

	def __init__(self, site: str, tag: str, body_bytes: int):
		command = [sys.executable, os.path.abspath(__file__), "--child", "serve", "--site", site]
		command += ["--tag", tag, "--body-bytes", str(body_bytes)]
		self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

	def step(self, step: str, s: int, units: int) -> dict:
		self.process.stdin.write(json.dumps({"step": step, "s": s, "units": units}) + "\n")
		self.process.stdin.flush()
		line = self.process.stdout.readline()
		if not line:
			raise RuntimeError(f"the script stopped at {step} {s}")
		return json.loads(line)

	def finish(self) -> dict:
		output, _ = self.process.communicate(json.dumps({"step": "quit"}) + "\n", timeout=600)
		if self.process.returncode:
			raise RuntimeError(f"the script failed with {self.process.returncode}")
		return json.loads(output.strip().splitlines()[-1])


def measure(args: argparse.Namespace, app_site: str, bare_site: str, made: list[tuple[str, str]]) -> dict:
	"""Both sites run the script in lockstep: each step (one commit) on one site then the other, in
	alternating order, so a neighbour's burst of load hits both alike. `made` takes each run's (site,
	tag), for the cleanup at the end."""
	sizes = [int(size) for size in args.sizes.split(",")]
	runs: dict[int, dict[str, list[dict]]] = {}
	sites = {"bare": bare_site, "app": app_site}
	for size in sizes:
		subjects, units = SIZES[size]
		runs[size] = {"app": [], "bare": []}
		for r in range(args.repeat if size < 100000 else 1):
			tags = {kind: f"sc{os.getpid() % 10000}{r}{kind[0]}{size}" for kind in sites}
			for kind, site in sites.items():
				run_child(site, "cleanup", tags[kind])
				made.append((site, tags[kind]))  # cleaned at the end even if the run fails
			scripts = {kind: Script(site, tags[kind], args.body_bytes) for kind, site in sites.items()}
			totals = {
				kind: {
					"docs": 0,
					"insert_s": 0.0,
					"insert_cpu_s": 0.0,
					"edits": 0,
					"edit_s": 0.0,
					"edit_cpu_s": 0.0,
				}
				for kind in sites
			}
			load = load_average()
			script = steps(subjects)
			for i, (step, s) in enumerate(script):
				for kind in ("bare", "app") if i % 2 == 0 else ("app", "bare"):
					done = scripts[kind].step(step, s, units)
					if step == "warm":
						continue
					phase = "edit" if step == "edit" else "insert"
					totals[kind]["edits" if phase == "edit" else "docs"] += done["count"]
					totals[kind][f"{phase}_s"] += done["s"]
					totals[kind][f"{phase}_cpu_s"] += done["cpu_s"]
				if subjects >= 50 and i % 10 == 9:  # a long run says how it goes
					bare, app = totals["bare"], totals["app"]
					log(f"{size} units, step {i + 1}/{len(script)}: {bare} vs {app}")
			for kind in sites:
				totals[kind]["check"] = scripts[kind].finish().get("check")
				totals[kind]["load_before"], totals[kind]["load_after"] = load, load_average()
				runs[size][kind].append(totals[kind])
			bare, app = totals["bare"], totals["app"]
			log(
				f"{size} units, run {r + 1}: inserts {bare['docs'] / bare['insert_s']:.0f} vs "
				f"{app['docs'] / app['insert_s']:.0f} docs/s, edits {bare['edits'] / bare['edit_s']:.0f} vs "
				f"{app['edits'] / app['edit_s']:.0f}/s, bare vs app (load {load[0]})"
			)
	return runs


def summarise(runs: dict) -> tuple[list[dict], bool]:
	rows, met = [], True
	for size, kinds in runs.items():
		for phase, count, seconds in (("insert", "docs", "insert_s"), ("edit", "edits", "edit_s")):
			pairs = list(zip(kinds["app"], kinds["bare"], strict=True))
			ratios = [a[seconds] / b[seconds] for a, b in pairs]
			cpu = seconds.replace("_s", "_cpu_s")
			bare = statistics.median(run[seconds] for run in kinds["bare"])
			app = statistics.median(run[seconds] for run in kinds["app"])
			n = kinds["bare"][0][count]
			ratio = statistics.median(ratios)
			cpu_ratio = statistics.median(a[cpu] / b[cpu] for a, b in pairs)
			met &= ratio <= GOAL_RATIO
			rows.append(
				{
					"units": size,
					"phase": phase,
					"count": n,
					"bare_per_s": round(n / bare, 1),
					"app_per_s": round(n / app, 1),
					"bare_ms_each": round(bare / n * 1000, 3),
					"app_ms_each": round(app / n * 1000, 3),
					"ratio": round(ratio, 2),
					"cpu_ratio": round(cpu_ratio, 2),  # this process's CPU only: not the database's
					"ratios_each_run": [round(value, 2) for value in ratios],
				}
			)
	return rows, met


def main() -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	add_bench_arguments(parser)
	parser.add_argument(
		"--bare-site", default=os.environ.get("MEMORA_BARE_SITE"), help="the site without the app"
	)
	parser.add_argument("--sizes", default="500,2000", help=f"units per run, of {sorted(SIZES)}")
	parser.add_argument("--repeat", type=int, default=3)
	parser.add_argument("--body-bytes", type=int, default=2000, help="about this many bytes per Unit body")
	parser.add_argument("--profile", type=int, help="also profile the app site's script at this size")
	parser.add_argument("--quick", action="store_true", help="500 units, 1 run, 20 Desk saves")
	parser.add_argument("--desk-saves", type=int, default=200, help="Desk saves per site (0: none)")
	parser.add_argument("--desk-units", type=int, default=1000, help="Units in the Subject saved in")
	parser.add_argument("--admin-password", default="admin", help="both sites' Administrator password")
	parser.add_argument("--results", default="bench_save_cost", help="name of the results file")
	parser.add_argument("--child", help=argparse.SUPPRESS)
	parser.add_argument("--tag", help=argparse.SUPPRESS)
	parser.add_argument("--units", type=int, help=argparse.SUPPRESS)
	parser.add_argument("--restore", help=argparse.SUPPRESS)
	args = parser.parse_args()
	if args.child:
		args.action = args.child
		child(args)
		return 0
	bench, app_site = bench_and_site(parser, args)
	if not bench or not args.bare_site:
		parser.error("needs --bench, --site (with this app) and --bare-site (Frappe only)")
	if args.quick:
		args.sizes, args.repeat, args.desk_saves = "500", 1, 20
	bare = run_child(args.bare_site, "setup")
	if bare["with_app"]:
		parser.error(f"{args.bare_site} has memora_storage installed: it must be a bare Frappe site")
	app = run_child(app_site, "setup")
	if not app["with_app"]:
		parser.error(f"{app_site} does not have memora_storage installed")
	made: list[tuple[str, str]] = []
	try:
		runs = measure(args, app_site, args.bare_site, made) if args.sizes else {}
		desk = measure_desk(args, bench, app_site, args.bare_site, made) if args.desk_saves else None
		profile = None
		if args.profile:
			tag = f"scprof{os.getpid() % 10000}"
			run_child(app_site, "cleanup", tag)
			made.append((app_site, tag))
			profile = run_child(app_site, "profile", tag, args.profile, args.body_bytes)
	finally:
		for site, tag in made:
			run_child(site, "cleanup", tag)
		run_child(app_site, "restore", restore=app["cdn_before"])
	rows, met = summarise(runs)
	table = (
		""
		if not rows
		else markdown_table(
			[
				"units",
				"phase",
				"count",
				"bare /s",
				"app /s",
				"bare ms",
				"app ms",
				"ratio",
				"each run",
				"CPU ratio",
			],
			[
				[
					r["units"],
					r["phase"],
					r["count"],
					r["bare_per_s"],
					r["app_per_s"],
					r["bare_ms_each"],
					r["app_ms_each"],
					r["ratio"],
					" ".join(map(str, r["ratios_each_run"])),
					r["cpu_ratio"],
				]
				for r in rows
			],
		)
	)
	results = {
		"bench": str(bench),
		"sites": {"app": app_site, "bare": args.bare_site},
		"method": __doc__.split("\n\n")[1],
		"body_bytes": args.body_bytes,
		"repeat": args.repeat,
		"rows": rows,
		"runs": {str(size): kinds for size, kinds in runs.items()},
		"goal": {"ratio_at_most": GOAL_RATIO, "met": met},
	}
	if desk:
		results["desk_save"] = desk
		cases = {"local": desk, "on the CDN": desk["on_cdn"]}
		results["goal"]["met"] = met and all(
			case["ratio_p50"] <= GOAL_RATIO and case["ratio_p99"] <= GOAL_RATIO for case in cases.values()
		)
		table += (
			"\n\nDesk save over HTTP (one gunicorn worker), ms; the Unit's version local or on the CDN:\n\n"
		)
		table += markdown_table(
			["unit", "site", "p50", "p99", "saves"],
			[
				row
				for case, stats in cases.items()
				for row in (
					*(
						[case, kind, stats[kind]["p50_ms"], stats[kind]["p99_ms"], stats[kind]["saves"]]
						for kind in ("bare", "app")
					),
					[case, "ratio", stats["ratio_p50"], stats["ratio_p99"], ""],
				)
			],
		)
	if profile:
		results["profile"] = {"units": args.profile, **profile}
	write_results(args.results, results, table)
	return 0


if __name__ == "__main__":
	sys.exit(main())
