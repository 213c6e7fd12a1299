"""Publishing on a real Frappe site: documents saved, their files on the CDN, one real worker.

Three figures, each against its goal:

1. Throughput. N documents created through Frappe (insert, commit every 100, as a data import
   does) with no worker running; then one real `bench worker` is started and timed from its start
   until every Content File row of the import is Synced at its current SHA-256. Compared with
   `rclone copy` of the same files to the same S3 endpoint in the same run (goal: ours / rclone
   <= 1.5), with the S3 requests each sent, counted from the endpoint's own access log (goal: about
   one PUT per file). Also end to end: the worker running during the import, from the import's
   start until all is Synced.
2. Latency. On an idle site with the worker running, one Unit saved and committed, then the time
   until its CDN URL serves the new bytes, and until `get_content_url` hands out the CDN URL
   (goal: p50 <= 1 s, p99 <= 3 s).
   Throttled: the same throughput run again with a fault proxy in front of the endpoint answering
   `503 SlowDown` to a share of PUTs (--throttled, 30 % by default, as S3 does above its request
   rate): its time beside the unthrottled one's in the same run (goal: at most 3x), with no
   failover and no Failed row.
3. Relink start. With N uploads due and the worker draining, Local Fallback Mode switched on:
   seconds until the relink job starts, and until every file links locally.

Where the time goes: a drain of N due uploads is profiled in-process (cProfile) at the relink
size. A run where no row became Synced for 60 s is reported as Stalled, with what was seen (row
states, files whose bytes differ from their row, what the endpoint kept receiving, the worker's
errors). Others may share the site: a phase that someone else disturbs (a CDN Settings save,
Content File rows deleted, another worker of the bench running) is run again, and the run waits
while another worker of the bench is alive.

The content is shaped like a real catalogue: 10 subjects per plan, 50 units per subject, unit
bodies of 1-30 KB. The S3 endpoint is a moto server of its own on 127.0.0.1 (a bucket readable
by anyone, as a CDN origin is, so the CDN URL really serves), CDN Settings point at it for the run
and are restored afterwards; the documents, files and Content File rows it made are deleted. It
starts its own worker, so no other worker of the bench should run meanwhile (it would share the
jobs). Run it as the bench's owner, with the bench's Python, from the bench's `sites` folder:

    cd BENCH/sites && ../env/bin/python /path/to/memora_storage/benchmarks/bench_publish.py \\
        --bench BENCH --site SITE [--sizes 1000,5000] [--edits 50] [--quick] [--no-profile]

(or MEMORA_BENCH and MEMORA_SITE; `python -m benchmarks --only publish` does all this for you).
moto does not fit in the bench's Python: see `common.moto_server_command` for how its server is
started (--moto-python overrides). Needs `rclone` on PATH.
"""

import argparse
import cProfile
import hashlib
import io
import json
import math
import os
import pstats
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe

from benchmarks.common import (
	add_bench_arguments,
	filesystem_of,
	markdown_table,
	moto_server_command,
	open_site,
	percentile,
	profile_table,
	write_results,
)

HOST = "127.0.0.1"
KEY_PREFIX = "content"
KEYS = "testing"
SUBJECTS_PER_PLAN = 10
UNITS_PER_SUBJECT = 50
COMMIT_EVERY = 100
TRANSFERS = 16  # S3Config.max_pool_connections: the uploads in flight in one drain pass
GOAL_RATIO = 1.5
GOAL_PUTS_PER_FILE = 1.1
GOAL_P50_S = 1.0
GOAL_P99_S = 3.0
GOAL_THROTTLED_RATIO = 3.0
STALL_S = 60.0  # no row of ours Synced for this long (with some still due): stuck
LOCAL_LINK = "/files/memora_content/"
WORDS = "خطة مادة وحدة درس تمرين سؤال جواب plan subject unit lesson quiz answer".split()
SETTINGS_FIELDS = (
	"enable_cdn",
	"cdn_base_url",
	"local_fallback_mode",
	"local_domain",
	"endpoint_url",
	"bucket",
	"region",
	"key_prefix",
	"access_key_id",
	"min_free_disk_percent",
	"regenerate_missing_files",
	"health_check_start_hour",
	"health_check_end_hour",
)
_LOG_LINE = re.compile(
	rb'"(?:\x1b\[[\d;]*m)*(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+(?:\x1b\[[\d;]*m)*" (\d{3})'
)


def app_fingerprint() -> str:
	"""A hash of the installed app's Python files: others may install a newer checkout mid-run."""
	import memora_storage

	digest = hashlib.sha1()
	for file in sorted(Path(memora_storage.__file__).parent.rglob("*.py")):
		digest.update(file.read_bytes())
	return digest.hexdigest()[:12]


def log(message: str) -> None:
	print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
	with socket.socket() as s:
		s.bind((HOST, 0))
		return s.getsockname()[1]


class Moto:
	"""moto's S3 server in a subprocess; its access log is what both uploaders are counted from."""

	def __init__(self, workdir: Path, python: str | None):
		self.command, self.env = moto_server_command(python)
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self.log_path = workdir / "moto.log"
		self.process: subprocess.Popen | None = None

	def start(self) -> "Moto":
		with open(self.log_path, "wb") as out:
			self.process = subprocess.Popen(
				[*self.command, "-H", HOST, "-p", str(self.port)],
				stdout=out,
				stderr=subprocess.STDOUT,
				env={**os.environ, **self.env},
				start_new_session=True,
			)
		deadline = time.monotonic() + 30
		while time.monotonic() < deadline:
			if self.process.poll() is not None:
				raise RuntimeError(f"moto exited at start: {self.log_path.read_text()[-2000:]}")
			try:
				urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).read()
				return self
			except OSError:
				time.sleep(0.1)
		raise RuntimeError(f"moto did not answer on {self.url}")

	def stop(self) -> None:
		if self.process and self.process.poll() is None:
			self.process.terminate()
			try:
				self.process.wait(10)
			except subprocess.TimeoutExpired:
				self.process.kill()

	def mark(self) -> int:
		"""Where the log ends now (after letting earlier requests reach it)."""
		time.sleep(0.3)
		return self.log_path.stat().st_size

	def requests(self, start: int, end: int | None = None) -> list[tuple[str, str, int]]:
		with open(self.log_path, "rb") as f:
			f.seek(start)
			data = f.read(None if end is None else end - start)
		return [(m[1].decode(), m[2].decode(), int(m[3])) for m in _LOG_LINE.finditer(data)]


def by_method(requests: list[tuple[str, str, int]], prefix: str | None = None) -> dict[str, int]:
	counts = Counter(method for method, path, _ in requests if prefix is None or path.startswith(prefix))
	return dict(sorted(counts.items()))


class Worker:
	"""One `bench worker` (all queues, a forked child per job, as in production)."""

	def __init__(self, bench: Path, log_path: Path):
		self.bench = bench
		self.log_path = log_path
		self.process: subprocess.Popen | None = None

	def start(self) -> float:
		"""Start it; returns the monotonic clock at the start."""
		env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI makes the worker log errors only
		started = time.monotonic()
		with open(self.log_path, "ab") as out:
			self.process = subprocess.Popen(
				[
					str(self.bench / "env" / "bin" / "python"),
					"-m",
					"frappe.utils.bench_helper",
					"frappe",
					"worker",
				],
				cwd=self.bench / "sites",
				stdout=out,
				stderr=subprocess.STDOUT,
				env=env,
				start_new_session=True,
			)
		return started

	def wait_ready(self, timeout: float = 60) -> float:
		"""Seconds until RQ lists the worker (it then takes jobs)."""
		from frappe.utils.background_jobs import get_redis_conn
		from rq import Worker as RqWorker

		started = time.monotonic()
		while time.monotonic() - started < timeout:
			if any(w.pid == self.process.pid for w in RqWorker.all(connection=get_redis_conn())):
				return time.monotonic() - started
			if self.process.poll() is not None:
				raise RuntimeError(f"the worker exited: {self.log_path.read_text()[-2000:]}")
			time.sleep(0.05)
		raise RuntimeError("the worker did not register within {timeout} s")

	def stop(self) -> None:
		"""Warm shutdown (the running job, if any, finishes), then the whole group if it hangs."""
		if not self.process or self.process.poll() is not None:
			return
		self.process.send_signal(signal.SIGTERM)
		try:
			self.process.wait(120)
		except subprocess.TimeoutExpired:
			os.killpg(self.process.pid, signal.SIGKILL)
			self.process.wait()

	def kill(self) -> None:
		"""Stop at once, the job's work horse too (a stuck job would hold a warm shutdown forever)."""
		import psutil

		if not self.process or self.process.poll() is not None:
			return
		for child in psutil.Process(self.process.pid).children(recursive=True):
			child.kill()
		self.process.kill()
		self.process.wait()

	def log_size(self) -> int:
		return self.log_path.stat().st_size if self.log_path.exists() else 0

	@property
	def running(self) -> bool:
		return bool(self.process) and self.process.poll() is None


def other_workers(mine: Worker) -> list[int]:
	"""Live RQ workers of this bench other than ours: they would take our jobs too."""
	from frappe.utils.background_jobs import get_redis_conn
	from rq import Worker as RqWorker

	return [
		worker.pid
		for worker in RqWorker.all(connection=get_redis_conn())
		if worker.pid and not (mine.process and worker.pid == mine.process.pid) and _alive(worker.pid)
	]


def _alive(pid: int) -> bool:
	"""False for the registration a killed worker left behind."""
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	except PermissionError:
		pass
	return True


def memora_jobs(site: str) -> Counter:
	"""This site's memora_storage jobs queued or running, by (state, method)."""
	from frappe.utils.background_jobs import get_queues, get_redis_conn
	from rq import Worker as RqWorker
	from rq.job import Job
	from rq.registry import StartedJobRegistry

	conn = get_redis_conn()
	live = {w.name for w in RqWorker.all(connection=conn) if w.pid and _alive(w.pid)}
	counts: Counter = Counter()
	for queue in get_queues(conn):
		for state, ids in (
			("queued", queue.get_job_ids()),
			("started", StartedJobRegistry(queue=queue).get_job_ids()),
		):
			for job in Job.fetch_many(ids, connection=conn):
				try:
					kwargs = job.kwargs if job else {}
				except Exception:  # a job whose data cannot be read is someone else's problem
					continue
				method = str(kwargs.get("method", ""))
				if state == "started" and job.worker_name not in live:
					continue  # its worker was killed: it runs nowhere
				if kwargs.get("site") == site and method.startswith("memora_storage"):
					counts[(state, method.rpartition(".")[2])] += 1
	return counts


def idle(site: str) -> bool:
	from memora_storage import jobs

	return not memora_jobs(site) and not jobs.is_requested(jobs.DRAIN) and not jobs.is_requested(jobs.RELINK)


def wait_idle(site: str, timeout: float = 600) -> float:
	started = time.monotonic()
	while time.monotonic() - started < timeout:
		if idle(site):
			time.sleep(0.3)
			if idle(site):
				return time.monotonic() - started
		time.sleep(0.2)
	raise RuntimeError(f"memora_storage jobs still queued or running after {timeout} s: {memora_jobs(site)}")


# Settings -----------------------------------------------------------------------------------------


def settings_modified() -> str:
	frappe.db.rollback()
	return str(
		frappe.db.sql("select value from tabSingles where doctype='CDN Settings' and field='modified'")[0][0]
	)


def save_settings(values: dict) -> str:
	"""Save CDN Settings through the document (hooks included) and commit; retried on a concurrent save."""
	for attempt in range(10):
		try:
			frappe.db.rollback()
			doc = frappe.get_single("CDN Settings")
			doc.update(values)
			doc.save(ignore_permissions=True)
			frappe.db.commit()
			return str(doc.modified)
		except frappe.TimestampMismatchError:
			frappe.db.rollback()
			time.sleep(0.2 * (attempt + 1))
	raise RuntimeError("CDN Settings kept changing under us")


def current_settings() -> dict:
	doc = frappe.get_single("CDN Settings")
	values = {field: doc.get(field) for field in SETTINGS_FIELDS}
	values["secret_access_key"] = doc.get_password("secret_access_key", raise_exception=False) or ""
	return values


# Content ------------------------------------------------------------------------------------------


def layout(tag: str, n: int) -> list[dict]:
	"""N documents: plans of 10 subjects of up to 50 units, in the order an import would create them."""
	per_plan = 1 + SUBJECTS_PER_PLAN * (1 + UNITS_PER_SUBJECT)
	plans = max(1, math.ceil(n / per_plan))
	subjects = plans * SUBJECTS_PER_PLAN
	units = max(0, n - plans - subjects)
	rng = random.Random(n)
	docs = [{"doctype": "Plan", "name": f"{tag}-p{p:03}", "title": f"Plan {p}"} for p in range(plans)]
	docs += [
		{
			"doctype": "Subject",
			"name": f"{tag}-s{s:04}",
			"title": f"Subject {s}",
			"plan": f"{tag}-p{s // SUBJECTS_PER_PLAN:03}",
		}
		for s in range(subjects)
	]
	for u in range(units):
		words = rng.choices(WORDS, k=rng.randint(1024, 30 * 1024) // 8)
		docs.append(
			{
				"doctype": "Unit",
				"name": f"{tag}-u{u:05}",
				"title": f"Unit {u}",
				"subject": f"{tag}-s{u // UNITS_PER_SUBJECT:04}",
				"body": " ".join(words),
			}
		)
	return docs


def import_documents(docs: list[dict]) -> float:
	"""Insert through Frappe (validation, hooks, files after each commit), committing every 100."""
	started = time.perf_counter()
	for i, doc in enumerate(docs, 1):
		frappe.get_doc(doc).insert()
		if i % COMMIT_EVERY == 0:
			frappe.db.commit()
	frappe.db.commit()
	return time.perf_counter() - started


_OURS = "(path like %(units)s or path like %(plans)s)"


def _ours(tag: str) -> dict:
	return {"units": f"units/{tag}-%", "plans": f"plans/{tag}-%"}


def rows(tag: str) -> list[frappe._dict]:
	frappe.db.rollback()  # a fresh snapshot: the worker's commits
	return frappe.db.sql(
		f"""select name, path, parent_path, sync_status, local_status, sha256, synced_sha256, size
		from `tabContent File` where {_OURS}""",
		_ours(tag),
		as_dict=True,
	)


def sync_counts(tag: str) -> tuple[int, int]:
	frappe.db.rollback()
	total, synced = frappe.db.sql(
		f"""select count(*), coalesce(sum(sync_status='Synced' and synced_sha256=sha256), 0)
		from `tabContent File` where {_OURS}""",
		_ours(tag),
	)[0]
	return int(total), int(synced)


class Interference(RuntimeError):
	"""Someone else changed the site under a measurement (another test run saving CDN Settings,
	deleting Content File rows, or draining in its own process): the phase is run again."""


class Stalled(RuntimeError):
	"""No row of ours became Synced for STALL_S while some were not: the publishing got stuck."""


def wait_synced(
	site: str, tag: str, n: int, since: float, guard=None, timeout: float = 1800, poll: float = 0.1
) -> dict:
	"""Poll (every `poll` s) until all N rows are Synced at their current version and the site's jobs
	are done. A slower poll spares the database a count of every row at 100,000 rows.

	The time counted is when the rows last became all Synced: a parent rendered again after its
	children landed is a new version, so a moment of all-Synced before it does not count. Raises
	Stalled when the count of Synced rows has not grown for STALL_S.
	"""
	first_synced = all_synced_at = None
	deadline = time.monotonic() + timeout
	best, progressed = -1, time.monotonic()
	while time.monotonic() < deadline:
		now = time.monotonic()
		if guard:
			guard()
		total, synced = sync_counts(tag)
		if synced > best:
			best, progressed = synced, now
		elif synced < n and now - progressed > STALL_S:
			if any(state == "started" and method == "relink_all" for state, method in memora_jobs(site)):
				progressed = now  # a relink holds the worker: uploads wait, as designed
			else:
				raise Stalled(f"{tag}: {synced} of {n} rows Synced, none more for {STALL_S:.0f} s")
		if synced and first_synced is None:
			first_synced = now
		if total == n and synced == n:
			if all_synced_at is None:
				all_synced_at = now
			if idle(site):
				time.sleep(0.5)
				total, synced = sync_counts(tag)
				if total == n and synced == n and idle(site):
					return {"seconds": all_synced_at - since, "first_synced_s": first_synced - since}
		else:
			all_synced_at = None
		time.sleep(poll)
	raise RuntimeError(f"{tag}: not all {n} rows Synced after {timeout} s ({sync_counts(tag)})")


def parents_linking(store, tag_rows: list[frappe._dict], needle: str) -> int:
	"""How many files that list others (plans, subjects) still contain `needle` (a base URL)."""
	count = 0
	for row in tag_rows:
		if not row.path.startswith("plans/"):
			continue
		try:
			count += needle in store.read(row.path).decode()
		except OSError:
			pass
	return count


def cleanup(tag: str) -> int:
	"""Delete what one import made: documents, their files (and backups), rows and delivery marks.

	Found by name on disk and in the tables, so a run whose rows someone else deleted is cleaned too.
	"""
	from memora_storage import delivery_hash, settings

	store = settings.content_store()
	found = rows(tag)
	for doctype in ("Unit", "Subject", "Plan"):
		frappe.db.sql(f"delete from `tab{doctype}` where name like %s", (f"{tag}-%",))
	for file in (store.root / "units").glob(f"{tag}-*.json"):
		store.remove(f"units/{file.name}")
	for folder in (store.root / "plans").glob(f"{tag}-*"):
		store.remove_tree(f"plans/{folder.name}")
	frappe.db.sql(f"delete from `tabContent File` where {_OURS}", _ours(tag))
	frappe.db.commit()
	delivery_hash.forget(row.path for row in found)
	return len(found)


# S3 side ------------------------------------------------------------------------------------------


def s3_client(moto: Moto):
	import boto3
	from botocore.config import Config

	return boto3.session.Session().client(
		"s3",
		endpoint_url=moto.url,
		region_name="us-east-1",
		aws_access_key_id=KEYS,
		aws_secret_access_key=KEYS,
		config=Config(s3={"addressing_style": "path"}),
	)


def create_public_bucket(moto: Moto, bucket: str) -> None:
	client = s3_client(moto)
	client.create_bucket(Bucket=bucket)
	policy = {
		"Version": "2012-10-17",
		"Statement": [
			{
				"Effect": "Allow",
				"Principal": "*",
				"Action": "s3:GetObject",
				"Resource": f"arn:aws:s3:::{bucket}/*",
			}
		],
	}
	client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def bucket_mismatches(moto: Moto, bucket: str, store, tag_rows: list[frappe._dict]) -> int:
	"""Files whose object under the key prefix is missing or differs (ETag = MD5 of the bytes)."""
	etags = {}
	for page in (
		s3_client(moto).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{KEY_PREFIX}/")
	):
		for item in page.get("Contents", []):
			etags[item["Key"][len(KEY_PREFIX) + 1 :]] = item["ETag"].strip('"')
	return sum(etags.get(row.path) != hashlib.md5(store.read(row.path)).hexdigest() for row in tag_rows)


def rclone_copy(moto: Moto, source: Path, target: str) -> float:
	"""`rclone copy` with the same concurrency as a drain pass; seconds taken."""
	env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # Debian's build fails on it
	env.update(
		RCLONE_CONFIG_BENCH_TYPE="s3",
		RCLONE_CONFIG_BENCH_PROVIDER="Other",
		RCLONE_CONFIG_BENCH_ENDPOINT=moto.url,
		RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEYS,
		RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=KEYS,
		RCLONE_CONFIG_BENCH_REGION="us-east-1",
		RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
	)
	command = ["rclone", "copy", str(source), f"bench:{target}", "--transfers", str(TRANSFERS)]
	command += ["--checkers", str(TRANSFERS), "--config", "/dev/null"]
	started = time.perf_counter()
	done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
	seconds = time.perf_counter() - started
	if done.returncode:
		raise RuntimeError(f"rclone failed: {done.stderr[-2000:]}")
	return seconds


# The run ------------------------------------------------------------------------------------------


class Run:
	"""What every phase shares: the site, moto, the worker, the bucket, and what to clean up."""

	def __init__(self, args: argparse.Namespace, bench: Path, site: str, workdir: Path):
		from memora_storage import settings

		self.args = args
		self.bench = bench
		self.site = site
		self.workdir = workdir
		self.moto = Moto(workdir, args.moto_python)
		self.worker = Worker(bench, workdir / "worker.log")
		self.bucket = f"bench-publish-{frappe.generate_hash(length=8).lower()}"
		self.cdn_base = f"{self.moto.url}/{self.bucket}/{KEY_PREFIX}"
		self.store = settings.content_store()
		self.tags: list[str] = []
		self.interference: list[str] = []
		self.settings_stamp = ""
		self.waited_s = 0.0

	def new_tag(self) -> str:
		tag = f"bp{frappe.generate_hash(length=6).lower()}"
		self.tags.append(tag)
		return tag

	def point_settings(self, **values) -> None:
		self.settings_stamp = save_settings(
			{
				"enable_cdn": 1,
				"cdn_base_url": self.cdn_base,
				"local_fallback_mode": 0,
				"endpoint_url": self.moto.url,
				"bucket": self.bucket,
				"region": "us-east-1",
				"key_prefix": KEY_PREFIX,
				"access_key_id": KEYS,
				"secret_access_key": KEYS,
				"min_free_disk_percent": 0,
				**values,
			}
		)

	def check_settings(self, phase: str, tag: str | None = None, n: int | None = None) -> None:
		"""Raise Interference when someone else's save (another test run on the site) changed the
		settings, which would send our rows elsewhere, or when our rows were deleted under us."""
		stamp = settings_modified()
		if stamp != self.settings_stamp:
			raise Interference(f"{phase}: CDN Settings saved by someone else at {stamp}")
		if tag and n is not None and (total := sync_counts(tag)[0]) != n:
			raise Interference(f"{phase}: {total} of our {n} Content File rows left (someone deleted rows)")
		if others := other_workers(self.worker):
			raise Interference(f"{phase}: other RQ workers of the bench running (pids {others})")

	def wait_quiet(self, phase: str, timeout: float = 1800) -> None:
		"""Wait while another worker of the bench runs (another test run starts its own): it would
		take our jobs too."""
		started = time.monotonic()
		said = False
		while others := other_workers(self.worker):
			if not said:
				log(f"{phase}: waiting for the other RQ workers of the bench to end (pids {others})")
				said = True
			if time.monotonic() - started > timeout:
				raise RuntimeError(f"other workers still running after {timeout} s: {others}")
			time.sleep(2)
		if said:
			self.waited_s += time.monotonic() - started
			time.sleep(2)

	def attempt(self, phase: str, body, tries: int = 6):
		"""Run a phase, again (after cleaning up) when someone else disturbed it."""
		for attempt in range(1, tries + 1):
			tags_before = len(self.tags)
			self.wait_quiet(phase)
			try:
				return body()
			except Interference as e:
				self.interference.append(f"try {attempt}: {e}")
				log(f"WARNING {e}: running {phase} again")
				if self.worker.running:
					self.worker.stop()
				for tag in self.tags[tags_before:]:
					cleanup(tag)
				del self.tags[tags_before:]
				time.sleep(5 * attempt)
				self.point_settings()
		raise RuntimeError(f"{phase}: disturbed {tries} times in a row; giving up")

	def settle(self) -> dict:
		"""Let one worker run whatever memora_storage jobs were waiting for the site (earlier runs'
		drains and relinks, ours from the settings save), so none runs inside a measurement."""
		waiting = memora_jobs(self.site)
		self.worker.start()
		self.worker.wait_ready()
		seconds = wait_idle(self.site)
		self.worker.stop()
		return {"jobs_waiting": {f"{s}:{m}": c for (s, m), c in waiting.items()}, "seconds": seconds}

	def snapshot(self, tag_rows: list[frappe._dict], name: str) -> Path:
		"""The same files in a folder of their own, for rclone."""
		folder = self.workdir / name
		for row in tag_rows:
			target = folder / row.path
			target.parent.mkdir(parents=True, exist_ok=True)
			target.write_bytes(self.store.read(row.path))
		return folder

	def rclone(self, folder: Path, prefix: str) -> dict:
		mark = self.moto.mark()
		seconds = rclone_copy(self.moto, folder, f"{self.bucket}/{prefix}")
		return {"seconds": seconds, "requests": by_method(self.moto.requests(mark, self.moto.mark()))}

	def throughput(self, n: int) -> dict:
		"""(a) import with no worker, then one worker from its start; rclone before and after."""
		tag = self.new_tag()
		docs = layout(tag, n)
		if self.worker.running:
			wait_idle(self.site)
			self.worker.stop()
		if memora_jobs(self.site):
			self.settle()  # others' jobs queued since: run them now, not inside the measurement
		log(f"N={n}: import of {len(docs)} documents, no worker running")
		import_s = import_documents(docs)
		tag_rows = rows(tag)
		pending = sum(row.sync_status == "Pending" for row in tag_rows)
		if others := other_workers(self.worker):
			raise Interference(f"N={n} import: other RQ workers of the bench running (pids {others})")
		if len(tag_rows) != n or pending != n:
			raise Interference(
				f"N={n}: {len(tag_rows)} rows, {pending} Pending after an import with no worker"
			)
		self.check_settings(f"N={n} import")
		log(f"N={n}: imported in {import_s:.1f} s; {pending} rows Pending; rclone copy (before)")
		before = self.rclone(self.snapshot(tag_rows, f"{tag}-before"), f"rclone-{tag}-before")
		mark = self.moto.mark()
		since = self.worker.start()
		ready_s = self.worker.wait_ready()
		try:
			synced = wait_synced(self.site, tag, n, since, lambda: self.check_settings(f"N={n} sync", tag, n))
		except Stalled as e:
			return self.stalled(e, tag, mark, since, files=n, import_s=import_s)
		end = self.moto.mark()
		self.worker.stop()
		self.check_settings(f"N={n} sync", tag, n)
		if synced["first_synced_s"] < ready_s:
			raise Interference(f"N={n}: rows Synced before our worker took jobs (someone else's drain)")
		requests = self.moto.requests(mark, end)
		tag_rows = rows(tag)
		mismatched = bucket_mismatches(self.moto, self.bucket, self.store, tag_rows)
		if mismatched:
			raise Interference(f"N={n}: {mismatched} files missing or different in our bucket")
		local_links = parents_linking(self.store, tag_rows, LOCAL_LINK)
		log(f"N={n}: synced in {synced['seconds']:.1f} s from the worker's start; rclone copy (after)")
		after = self.rclone(self.snapshot(tag_rows, f"{tag}-after"), f"rclone-{tag}-after")
		rclone_s = (before["seconds"] + after["seconds"]) / 2
		ours = by_method(requests, f"/{self.bucket}/{KEY_PREFIX}/")
		result = {
			"files": n,
			"completed": True,
			"bytes": sum(row.size or 0 for row in tag_rows),
			"import_s": import_s,
			"import_docs_per_s": n / import_s,
			"pending_after_import": pending,
			"worker_ready_s": ready_s,
			"first_synced_s": synced["first_synced_s"],
			"sync_s": synced["seconds"],
			"rclone_s": [before["seconds"], after["seconds"]],
			"rclone_mean_s": rclone_s,
			"ratio": synced["seconds"] / rclone_s,
			"requests": by_method(requests),
			"requests_content": ours,
			"puts_per_file": ours.get("PUT", 0) / n,
			"requests_per_file": sum(ours.values()) / n,
			"errors": sum(status >= 400 for _, _, status in requests),
			"rclone_requests": [before["requests"], after["requests"]],
			"rclone_requests_per_file": sum(after["requests"].values()) / n,
			"bucket_mismatches": mismatched,
			"parents_with_local_links": local_links,
		}
		log(f"N={n}: {json.dumps({k: v for k, v in result.items() if not isinstance(v, list | dict)})}")
		return {"tag": tag, **result}

	def throttled(self, n: int, share: float) -> dict:
		"""(a) again through a proxy answering 503 SlowDown to `share` of the PUTs."""
		from memora_storage import settings

		sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
		from s3_helpers import FaultProxy

		proxy = FaultProxy(self.moto.port).start()
		proxy.throttle = share
		self.point_settings(endpoint_url=proxy.url)
		try:
			result = self.throughput(n)
		finally:
			proxy.stop()
			self.point_settings()
		tag_rows = rows(result["tag"])
		frappe.clear_cache()
		return {
			**result,
			"throttle_share": share,
			"puts_throttled": proxy.throttled,
			"failed_rows": sum(row.sync_status == "Failed" for row in tag_rows),
			"cdn_down_after": settings.is_cdn_down(),
		}

	def end_to_end(self, n: int) -> dict:
		"""(b) the worker running during the import: from the import's start until all is Synced."""
		tag = self.new_tag()
		docs = layout(tag, n)
		if not self.worker.running:
			self.worker.start()
			self.worker.wait_ready()
		wait_idle(self.site)
		log(f"N={n}: import of {len(docs)} documents with the worker running")
		mark = self.moto.mark()
		log_mark = self.worker.log_size()
		since = time.monotonic()
		import_s = import_documents(docs)
		guard = lambda: self.check_settings(f"N={n} end to end", tag, n)  # noqa: E731
		try:
			synced = wait_synced(self.site, tag, n, since, guard)
		except Stalled as e:
			log(f"STALLED {e}")
			diagnosis = self.diagnose(tag, mark, log_mark, time.monotonic() - since)
			log(f"diagnosis: {json.dumps(diagnosis)[:3000]}")
			self.worker.kill()
			return {
				"tag": tag,
				"files": n,
				"import_s": import_s,
				"completed": False,
				"stalled": str(e),
				**diagnosis,
			}
		end = self.moto.mark()
		guard()
		requests = self.moto.requests(mark, end)
		ours = by_method(requests, f"/{self.bucket}/{KEY_PREFIX}/")
		tag_rows = rows(tag)
		result = {
			"files": n,
			"completed": True,
			"import_s": import_s,
			"total_s": synced["seconds"],
			"after_import_s": synced["seconds"] - import_s,
			"requests_content": ours,
			"puts_per_file": ours.get("PUT", 0) / n,
			"errors": sum(status >= 400 for _, _, status in requests),
			"bucket_mismatches": bucket_mismatches(self.moto, self.bucket, self.store, tag_rows),
			"parents_with_local_links": parents_linking(self.store, tag_rows, LOCAL_LINK),
		}
		if result["bucket_mismatches"]:
			raise Interference(f"N={n} end to end: {result['bucket_mismatches']} files missing or different")
		log(f"N={n} end to end: {json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)})}")
		return {"tag": tag, **result}

	def ensure_tree(self, tag: str, n: int) -> str:
		"""The documents of `tag`, all Synced, the worker running: imported again (untimed, with no
		worker running, as the throughput run does) if someone deleted our rows."""
		if sync_counts(tag)[0] != n:
			log(f"{tag}: our rows were deleted by someone else; importing the documents again")
			if self.worker.running:
				self.worker.stop()
			cleanup(tag)
			import_documents(layout(tag, n))
		if not self.worker.running:
			self.worker.start()
			self.worker.wait_ready()
		wait_synced(self.site, tag, n, time.monotonic(), lambda: self.check_settings("re-import", tag, n))
		return tag

	def stalled(self, error: Stalled, tag: str, mark, since: float, **fields) -> dict:
		"""A drain that stopped making progress: what was seen then, with the worker killed."""
		log(f"STALLED {error}")
		diagnosis = self.diagnose(tag, mark, 0, time.monotonic() - since)
		self.worker.kill()
		return {"tag": tag, **fields, "completed": False, "stalled": str(error), **diagnosis}

	def diagnose(self, tag: str, moto_mark: int, log_mark: int, seconds: float) -> dict:
		"""Why publishing got stuck: row states, files whose bytes differ from their row, what the
		endpoint kept receiving, and what the worker's log says."""
		tag_rows = rows(tag)
		differs = []
		for row in tag_rows:
			try:
				on_disk = hashlib.sha256(self.store.read(row.path)).hexdigest()
			except OSError:
				on_disk = None
			if row.local_status == "Written" and on_disk != row.sha256:
				differs.append(
					{
						"path": row.path,
						"row_sha256": row.sha256[:12],
						"disk_sha256": (on_disk or "")[:12],
						"status": row.sync_status,
					}
				)
		requests = self.moto.requests(moto_mark)
		puts = Counter(path for method, path, _ in requests if method == "PUT")
		text = self.worker.log_path.read_bytes()[log_mark:].decode(errors="replace")
		failed = Counter()
		for chunk in text.split("Traceback (most recent call last):")[1:]:
			frames = re.findall(r'memora_storage/(\w+\.py)", line (\d+), in (\w+)', chunk)
			error = re.search(r"^(frappe\.exceptions\.\w+|pymysql\.err\.\w+)", chunk, re.M)
			if frames and error:
				failed[f"{':'.join(frames[-1])} {error[1]}"] += 1
		return {
			"seconds_until_stall_noticed": seconds,
			"row_status": dict(Counter(row.sync_status for row in tag_rows)),
			"rows_whose_file_differs": len(differs),
			"files_differing": differs[:10],
			"puts": sum(puts.values()),
			"distinct_paths_put": len(puts),
			"most_put": puts.most_common(5),
			"puts_per_s": sum(puts.values()) / max(seconds, 1e-9),
			"worker_deadlocks": text.count("Deadlock found when trying to get lock"),
			"worker_failed_jobs": text.count("exception raised while executing"),
			"worker_failed_at": dict(failed.most_common(10)),
		}

	def latency(self, tag: str, edits: int) -> dict:
		"""Edit one Unit at a time on an idle site; time to new bytes at the CDN URL and to the CDN link."""
		import requests

		from memora_storage import api

		tag_rows = rows(tag)
		total = len(tag_rows)
		units = [row for row in tag_rows if row.path.startswith("units/")]
		rng = random.Random(edits)
		picked = rng.sample(units, min(edits, len(units)))
		session = requests.Session()
		samples = []
		mark = self.moto.mark()
		for i, row in enumerate(picked):
			self.check_settings("latency", tag, total)
			wait_idle(self.site)
			time.sleep(0.2)
			name = row.path[len("units/") : -len(".json")]
			cdn_url = f"{self.cdn_base}/{row.path}"
			doc = frappe.get_doc("Unit", name)
			doc.body = f"{doc.body} edit {i} {time.time()}"
			log_mark = self.worker.log_path.stat().st_size
			wall = time.time()
			started = time.monotonic()
			doc.save()
			frappe.db.commit()  # the file is written after this commit, and the drain asked for
			committed = time.monotonic() - started
			expected = self.store.read(row.path)
			served_s = linked_s = None
			url_local_after_commit = api.get_content_url(row.path) != cdn_url
			deadline = started + 60
			while (served_s is None or linked_s is None) and time.monotonic() < deadline:
				if served_s is None and session.get(cdn_url, timeout=10).content == expected:
					served_s = time.monotonic() - started
				if linked_s is None and api.get_content_url(row.path) == cdn_url:
					linked_s = time.monotonic() - started
				time.sleep(0.002)
			if served_s is None or linked_s is None:
				raise RuntimeError(f"edit {i} of {row.path}: not on the CDN after 60 s")
			time.sleep(0.05)
			drains = [j for j in worker_jobs(self.worker.log_path, log_mark) if j["method"] == "drain_cdn"]
			samples.append(
				{
					"drain_taken_s": drains[0]["taken"] - wall if drains else None,
					"drain_jobs": len(drains),
					"path": row.path,
					"save_commit_s": committed,
					"cdn_serves_s": served_s,
					"url_on_cdn_s": linked_s,
					"url_local_after_commit": url_local_after_commit,
				}
			)
		wait_idle(self.site)
		self.check_settings("latency")
		requests_seen = by_method(self.moto.requests(mark, self.moto.mark()), f"/{self.bucket}/{KEY_PREFIX}/")

		def stats(key: str) -> dict:
			values = [s[key] for s in samples]
			return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}

		taken = [s["drain_taken_s"] for s in samples if s["drain_taken_s"] is not None]
		return {
			"edits": len(samples),
			"drain_taken_s": {"p50": percentile(taken, 50), "p99": percentile(taken, 99)} if taken else None,
			"save_commit_s": stats("save_commit_s"),
			"cdn_serves_s": stats("cdn_serves_s"),
			"url_on_cdn_s": stats("url_on_cdn_s"),
			"url_local_after_commit": sum(s["url_local_after_commit"] for s in samples),
			"requests_incl_polling": requests_seen,
			"samples": samples,
		}

	def relink(self, tag: str) -> dict:
		"""N uploads due, the worker draining them, Local Fallback Mode on: when does the relink start?"""
		from memora_storage import content_files, jobs
		from memora_storage.utils.store import WriteResult

		if not self.worker.running:
			self.worker.start()
			self.worker.wait_ready()
		wait_idle(self.site)
		tag_rows = rows(tag)
		n = len(tag_rows)
		log(f"relink: {n} uploads queued, the worker draining them")
		for row in tag_rows:
			content_files.queue_upload(WriteResult(row.path, row.sha256, row.size or 0, False))
		frappe.db.commit()
		queued = time.monotonic()
		while sync_counts(tag)[1] == 0 and time.monotonic() - queued < 60:
			time.sleep(0.05)
		time.sleep(1.0)  # well into the drain
		due_at_flip = n - sync_counts(tag)[1]
		log_mark = self.worker.log_path.stat().st_size
		flip_started = time.time()
		self.point_settings(local_fallback_mode=1)
		flip_committed = time.time()
		guard = lambda: self.check_settings("relink", tag, n)  # noqa: E731
		started_at = all_local_at = None
		deadline = time.monotonic() + 600
		while (started_at is None or all_local_at is None) and time.monotonic() < deadline:
			if started_at is None and not jobs.is_requested(jobs.RELINK):
				started_at = time.time()
			if all_local_at is None and not parents_linking(self.store, tag_rows, self.cdn_base):
				all_local_at = time.time()
			if started_at and all_local_at is None:
				guard()
			time.sleep(0.01)
		synced_at_relink = sync_counts(tag)[1]
		log("relink: Local Fallback Mode off again; waiting for the drain to finish")
		self.point_settings(local_fallback_mode=0)
		back = wait_synced(self.site, tag, n, time.monotonic(), lambda: self.check_settings("relink", tag, n))
		relinks = [
			job for job in worker_jobs(self.worker.log_path, log_mark) if job["method"] == "relink_all"
		]
		job = relinks[0] if relinks else {"taken": None, "done": None}
		return {
			"files": n,
			"due_at_flip": due_at_flip,
			"synced_when_all_local": synced_at_relink,
			"save_commit_s": flip_committed - flip_started,
			"relink_started_s": None if started_at is None else started_at - flip_committed,
			"relink_taken_by_worker_s": None if job["taken"] is None else job["taken"] - flip_committed,
			"all_local_s": None if all_local_at is None else all_local_at - flip_committed,
			"relink_job_s": job["done"] - job["taken"] if job["done"] else None,
			"after_flip_back_synced_s": back["seconds"],
		}

	def profile_drain(self, tag: str) -> dict:
		"""The drain of N due uploads in this process under cProfile: where its time goes."""
		from memora_storage import content_files, uploads
		from memora_storage.utils.store import WriteResult

		if self.worker.running:
			wait_idle(self.site)
			self.worker.stop()
		tag_rows = rows(tag)
		for row in tag_rows:
			content_files.queue_upload(WriteResult(row.path, row.sha256, row.size or 0, False))
		frappe.db.commit()
		profiler = cProfile.Profile()
		started = time.perf_counter()
		profiler.enable()
		totals = uploads.drain()
		profiler.disable()
		seconds = time.perf_counter() - started
		out = io.StringIO()
		stats = pstats.Stats(profiler, stream=out)
		stats.sort_stats("cumulative").print_stats(30)
		stats.sort_stats("tottime").print_stats(20)
		(self.workdir / "drain.pstats").write_text(out.getvalue())
		top = []
		for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
			top.append(
				{
					"function": f"{Path(file).name}:{line}:{func}",
					"calls": calls,
					"tottime": tottime,
					"cumtime": cumtime,
				}
			)
		return {
			"files": len(tag_rows),
			"seconds": seconds,
			"totals": totals,
			"top_cumulative": sorted(top, key=lambda t: -t["cumtime"])[:25],
			"top_self": sorted(top, key=lambda t: -t["tottime"])[:20],
		}

	def quiesce(self) -> None:
		"""Our worker done with the site's jobs, then stopped: nothing of ours runs between phases."""
		if self.worker.running:
			try:
				wait_idle(self.site, timeout=120)
				self.worker.stop()
			except RuntimeError:
				self.worker.kill()

	def close(self, saved: dict) -> None:
		"""Delete what we made, restore the settings (with our worker there to run what that queues)."""
		try:
			self.worker.kill()  # a job still running would write files of documents we delete
			for tag in self.tags:
				cleanup(tag)
			if saved:
				if not self.worker.running and self.moto.process:
					self.worker.start()
					self.worker.wait_ready()
				save_settings(saved)
				wait_idle(self.site, timeout=300)
		finally:
			self.worker.stop()
			self.moto.stop()


def worker_jobs(worker_log: Path, offset: int) -> list[dict]:
	"""The jobs the worker took after `offset` of its log: method, when taken and when done (epoch)."""
	text = worker_log.read_bytes()[offset:].decode(errors="replace")
	stamp = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})"

	def epoch(match: re.Match) -> float:
		return time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000

	ended = {m[3]: epoch(m) for m in re.finditer(stamp + r" \S*: Job OK \((\S+)\)", text)}
	taken = []
	for m in re.finditer(stamp + r" \S*: \S*execute_job\(.*method='([\w.]+)'.*\((\S+)\)\s*$", text, re.M):
		taken.append({"method": m[3].rpartition(".")[2], "taken": epoch(m), "done": ended.get(m[4])})
	return taken


def report(results: dict) -> str:
	def cell(doc: dict | None, key: str, digits: int) -> float | str:
		if not doc:
			return ""
		if not doc.get("completed"):
			return "STALLED" if key in ("sync_s", "total_s") else _round(doc.get(key), digits)
		return _round(doc.get(key), digits)

	rows_ = []
	stalls = []
	for size in results["sizes"]:
		a, b = size["throughput"], size.get("end_to_end")
		rows_.append(
			[
				f"{a['files']:,}",
				cell(a, "import_s", 1),
				cell(a, "sync_s", 2),
				cell(a, "rclone_mean_s", 2),
				cell(a, "ratio", 2),
				cell(a, "puts_per_file", 3),
				cell(a, "requests_per_file", 3),
				cell(a, "rclone_requests_per_file", 2),
				cell(b, "import_s", 1),
				cell(b, "total_s", 2),
				cell(b, "after_import_s", 2),
				cell(b, "puts_per_file", 3),
			]
		)
		for name, doc in (("no worker during the import", a), ("worker running during the import", b)):
			if doc and not doc.get("completed"):
				stalls.append(
					f"N={doc['files']:,}, {name}: {doc['stalled']}. Rows {doc['row_status']}; "
					f"{doc['rows_whose_file_differs']} rows whose file on disk differs from the row's SHA-256; "
					f"{doc['puts']:,} PUTs to {doc['distinct_paths_put']:,} paths ({doc['puts_per_s']:.0f}/s), "
					f"most sent: {', '.join(f'{p.rsplit(chr(47), 1)[-1]} x{c:,}' for p, c in doc['most_put'][:4])}; "
					f"worker: {doc['worker_deadlocks']} deadlocks, {doc['worker_failed_jobs']} failed jobs "
					f"({', '.join(f'{k} x{v}' for k, v in doc['worker_failed_at'].items())})."
				)
	table = markdown_table(
		[
			"files",
			"import, no worker (s)",
			"sync from worker start (s)",
			"rclone copy (s)",
			"ours / rclone (goal <= 1.5)",
			"PUT / file",
			"requests / file",
			"rclone requests / file",
			"import, worker running (s)",
			"import start → all Synced (s)",
			"after the import (s)",
			"PUT / file, worker running",
		],
		rows_,
	)
	if stalls:
		table += "\n\n" + "\n\n".join(f"**Stalled.** {line}" for line in stalls)
	parts = [table]
	if throttled := [s for s in results["sizes"] if "throttled" in s]:
		parts.append(
			markdown_table(
				[
					"files",
					"unthrottled sync (s)",
					"throttled sync (s)",
					"throttled / unthrottled (goal <= 3)",
					"PUTs answered SlowDown",
					"PUT / file",
					"Failed rows",
					"CDN down after",
				],
				[
					[
						f"{s['throughput']['files']:,}",
						cell(s["throughput"], "sync_s", 2),
						cell(s["throttled"], "sync_s", 2),
						cell(s["throttled"], "ratio_to_unthrottled", 2),
						s["throttled"].get("puts_throttled", ""),
						cell(s["throttled"], "puts_per_file", 3),
						s["throttled"].get("failed_rows", ""),
						s["throttled"].get("cdn_down_after", ""),
					]
					for s in throttled
				],
			)
		)
	if lat := results.get("latency"):
		parts.append(
			markdown_table(
				["one Unit saved → (idle site, one worker)", "p50 s", "p99 s", "max s", "goal"],
				[
					[
						"save + commit (files written)",
						*(round(lat["save_commit_s"][k], 3) for k in ("p50", "p99", "max")),
						"",
					],
					[
						"CDN URL serves the new bytes",
						*(round(lat["cdn_serves_s"][k], 3) for k in ("p50", "p99", "max")),
						"p50 <= 1, p99 <= 3",
					],
					[
						"the worker takes the drain job",
						*(_round((lat["drain_taken_s"] or {}).get(k), 3) for k in ("p50", "p99")),
						"",
						"",
					],
					[
						"get_content_url gives the CDN URL",
						*(round(lat["url_on_cdn_s"][k], 3) for k in ("p50", "p99", "max")),
						"",
					],
				],
			)
		)
	if rel := results.get("relink"):
		parts.append(
			markdown_table(
				["Local Fallback Mode on, uploads due → (s after the save's commit)", "value"],
				[
					["uploads still due at the flip", rel["due_at_flip"]],
					["relink job running (its request flag cleared)", _round(rel["relink_started_s"], 3)],
					["relink job taken by the worker (its log)", _round(rel["relink_taken_by_worker_s"], 3)],
					["every plan and subject file links locally", _round(rel["all_local_s"], 3)],
					["relink job ran (s)", _round(rel["relink_job_s"], 2)],
				],
			)
		)
	if prof := results.get("profile"):
		parts.append(
			profile_table(f"Drain of {prof['files']:,} due uploads in one process under cProfile", prof)
		)
	if results["interference"]:
		parts.append("Interference: " + "; ".join(results["interference"]))
	return "\n\n".join(parts)


def _round(value: float | None, digits: int) -> float | str:
	return "" if value is None else round(value, digits)


def main() -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	add_bench_arguments(parser)
	parser.add_argument(
		"--sizes", default="1000,5000", help="files per throughput run (default: %(default)s)"
	)
	parser.add_argument("--edits", type=int, default=50, help="single saves timed for latency")
	parser.add_argument(
		"--relink-size", type=int, help="run the relink drill at this size (default: the largest)"
	)
	parser.add_argument("--no-end-to-end", action="store_true", help="skip the worker-during-import variant")
	parser.add_argument(
		"--no-profile",
		action="store_true",
		help="skip profiling a drain of N due uploads in-process at the relink size (done anyway when the ratio misses its goal)",
	)
	parser.add_argument(
		"--throttled",
		type=float,
		default=0.3,
		help="share of PUTs answered 503 SlowDown in the throttled run (default: %(default)s; 0: none)",
	)
	parser.add_argument("--quick", action="store_true", help="sizes 300, 10 edits: a smoke run")
	parser.add_argument("--moto-python", help="a Python with moto (default: see common.moto_server_command)")
	args = parser.parse_args()
	sizes = [300] if args.quick else [int(s) for s in args.sizes.split(",")]
	edits = 10 if args.quick else args.edits
	relink_size = args.relink_size or max(sizes)
	bench, site = open_site(parser, args)
	results_app = {"app_at_start": app_fingerprint()}
	workdir = Path(tempfile.mkdtemp(prefix="bench_publish."))
	run = Run(args, bench, site, workdir)
	saved: dict = {}
	results: dict = {"sizes": [], "interference": run.interference, **results_app}
	try:
		run.moto.start()
		create_public_bucket(run.moto, run.bucket)
		saved = current_settings()
		run.point_settings()
		log(f"moto at {run.moto.url} ({' '.join(run.moto.command)}), bucket {run.bucket}; settling the queue")
		run.wait_quiet("settle")
		results["settle"] = run.settle()
		for n in sizes:
			size = {"throughput": run.attempt(f"N={n} throughput", lambda n=n: run.throughput(n))}
			tag = size["throughput"].pop("tag")
			if not size["throughput"]["completed"]:
				cleanup(tag)
				results["sizes"].append(size)
				continue
			if "latency" not in results:
				results["latency"] = run.attempt(
					"latency", lambda tag=tag, n=n: run.latency(run.ensure_tree(tag, n), edits)
				)
				lat = results["latency"]
				log(
					f"latency: CDN serves p50 {lat['cdn_serves_s']['p50']:.3f} s, p99 {lat['cdn_serves_s']['p99']:.3f} s"
				)
			if n == relink_size:
				results["relink"] = run.attempt(
					"relink", lambda tag=tag, n=n: run.relink(run.ensure_tree(tag, n))
				)
				log(f"relink: {json.dumps(results['relink'])}")
				missed = any(x["throughput"].get("ratio", 99) > GOAL_RATIO for x in [*results["sizes"], size])
				if not args.no_profile or missed:  # where the time goes
					results["profile"] = run.profile_drain(tag)
			if args.throttled:
				throttled = run.attempt(f"N={n} throttled", lambda n=n: run.throttled(n, args.throttled))
				cleanup(throttled.pop("tag"))
				if throttled.get("completed") and size["throughput"].get("sync_s"):
					throttled["ratio_to_unthrottled"] = throttled["sync_s"] / size["throughput"]["sync_s"]
				size["throttled"] = throttled
				log(
					f"N={n} throttled: {json.dumps({k: v for k, v in throttled.items() if not isinstance(v, list | dict)})}"
				)
			run.quiesce()
			cleanup(tag)
			if not args.no_end_to_end:
				size["end_to_end"] = run.attempt(f"N={n} end to end", lambda n=n: run.end_to_end(n))
				run.quiesce()
				cleanup(size["end_to_end"].pop("tag"))
			results["sizes"].append(size)
	finally:
		run.close(saved)
		frappe.db.commit()
		shutil.rmtree(workdir, ignore_errors=True)

	results["app_at_end"] = app_fingerprint()
	if results["app_at_end"] != results["app_at_start"]:
		run.interference.append(
			"the installed app changed during the run (someone installed a newer checkout)"
		)
	largest = results["sizes"][-1]["throughput"]
	lat = results.get("latency")
	met = {
		"ratio": all(s["throughput"].get("ratio", 99) <= GOAL_RATIO for s in results["sizes"]),
		"puts_per_file": all(
			s["throughput"].get("puts_per_file", 99) <= GOAL_PUTS_PER_FILE for s in results["sizes"]
		),
		"throttled": all(
			s["throttled"].get("ratio_to_unthrottled", 99) <= GOAL_THROTTLED_RATIO
			and not s["throttled"]["failed_rows"]
			and not s["throttled"]["cdn_down_after"]
			for s in results["sizes"]
			if "throttled" in s
		),
		"end_to_end_completes": all(s.get("end_to_end", {}).get("completed", True) for s in results["sizes"]),
		"latency": bool(lat)
		and lat["cdn_serves_s"]["p50"] <= GOAL_P50_S
		and lat["cdn_serves_s"]["p99"] <= GOAL_P99_S,
	}
	results["goal"] = {
		"ratio_max": GOAL_RATIO,
		"puts_per_file_max": GOAL_PUTS_PER_FILE,
		"latency_p50_max_s": GOAL_P50_S,
		"latency_p99_max_s": GOAL_P99_S,
		**{f"met_{k}": v for k, v in met.items()},
		# Phases someone else disturbed were run again: `interference` lists them, the figures are
		# from undisturbed runs. An app installed mid-run is noted there too.
		"met": all(met.values()),
	}
	results["waited_for_other_workers_s"] = run.waited_s
	results["filesystem"] = filesystem_of(run.store.root)
	results["rclone"] = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.split(
		"\n"
	)[0]
	results["largest"] = largest["files"]
	write_results("bench_publish", results, report(results))
	return 0


if __name__ == "__main__":
	sys.exit(main())
