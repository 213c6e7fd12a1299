"""The core CDN outage drill, step by step (SC-003, SC-004, SC-005). tests/test_outage_drill.py
asserts every fact a step returns; benchmarks/bench_outage_drill.py narrates and times the same steps.

The parts are real: a moto S3 server in its own process, killed with SIGKILL; the content store on
a real folder laid out as a site (`sites/SITE/public/files/memora_content`); nginx from the
distribution with bench's own static-file rule (memora_storage/tests/nginx.py). The moto server
records every write it receives and the restarted process replays them, so the endpoint comes
back with the objects it held, as a real bucket does after an outage.

Files are rendered the way publishing.py renders them: canonical JSON, a plan manifest listing its
subjects with their URLs, a subject listing its units with their URLs, every URL from the resolver
over one settings snapshot. Every upload goes through the app's `Uploader.upload_many` and every
delete through `CdnBucket.delete_many` (a removed folder spelled out by the paths it held on the CDN,
as Content File rows spell it out), as the drain sends them.

What this exercises: during the outage each of those attempts fails with an UNREACHABLE CdnError
and the CDN keeps what it had; the disk holds exactly the live content; nginx serves it with its
exact bytes and 404 for what was deleted. Recovery takes the disk as the source of truth: `verify`
(the nightly verification) says where the restarted bucket differs, missing and mismatched paths
are uploaded and extra ones deleted (as Resync and the drain do), and `verify` then finds none.
The app's own queue is not here: that it loses nothing (every difference between the disk and the
bucket is a Pending Content File row saying what to do) is asserted by the site drill,
memora_storage/tests/test_outage_drill.py.
"""

import http.client
import json
import os
import random
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from s3_helpers import MotoServer, raw_client

from memora_storage.tests.nginx import Nginx
from memora_storage.utils import canonical, paths
from memora_storage.utils.resolver import UrlSettings, build_url
from memora_storage.utils.s3 import CdnBucket, CdnError, S3Config
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import local_files, verify

SITE = "drill.localhost"
BUCKET = "memora-outage-drill"
CDN_BASE = "https://cdn.example.com/memora"
ACCESS_KEY, SECRET_KEY = "AKIAMEMORADRILL00001", "memora-drill-secret"
PLAN_PATH = "plans/{name}/manifest.json"
SUBJECT_PATH = "plans/{plan}/subjects/{name}.json"
UNIT_PATH = "units/{name}.json"
# Names a URL must encode: Arabic script, a space, '#', '?', '%'.
ODD_NAMES = ("وحدة الأعداد 1", "unit #2?", "50% off", "الجملة الاسمية")
WRITE_METHODS = ("PUT", "POST", "DELETE")


class CrashableEndpoint(MotoServer):
	"""moto recording every request it serves, so a process started after a SIGKILL can replay its writes."""

	def __init__(self, workdir: Path):
		super().__init__(workdir / "moto.log")
		self.recording = workdir / "moto-recording.jsonl"

	def start(self, timeout: float = 30.0) -> "CrashableEndpoint":
		recording = {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(self.recording)}
		saved = {key: os.environ.get(key) for key in recording}
		os.environ.update(recording)  # the server process inherits them
		try:
			super().start(timeout)
		finally:
			for key, value in saved.items():
				if value is None:
					os.environ.pop(key, None)
				else:
					os.environ[key] = value
		return self

	def create_bucket(self, name: str) -> None:
		raw_client(self.url, ACCESS_KEY, SECRET_KEY).create_bucket(Bucket=name)

	def kill(self) -> None:
		self._process.kill()
		self._process.wait()

	def restart(self) -> None:
		"""Start again on the same port and replay the writes (reads need no replay)."""
		self.start()
		kept = [
			line
			for line in self.recording.read_text(encoding="utf-8").splitlines(keepends=True)
			if json.loads(line)["method"] in WRITE_METHODS
		]
		self.recording.write_text("".join(kept), encoding="utf-8")
		replay = f"{self.url}/moto-api/recorder/replay-recording"
		urllib.request.urlopen(urllib.request.Request(replay, data=b"", method="POST"), timeout=300).read()


@dataclass
class Catalogue:
	"""Plans, Subjects and Units as the database holds them, rendered to files as publishing.py does."""

	store: ContentStore
	url_settings: UrlSettings
	plans: dict[str, list[str]] = field(default_factory=dict)  # plan -> its subjects
	subjects: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # subject -> (plan, its units)
	units: dict[str, tuple[str, str]] = field(default_factory=dict)  # unit -> (subject, body)

	def path(self, doctype: str, name: str) -> str:
		if doctype == "Plan":
			return paths.render_path(PLAN_PATH, {"name": name})
		if doctype == "Subject":
			return paths.render_path(SUBJECT_PATH, {"plan": self.subjects[name][0], "name": name})
		return paths.render_path(UNIT_PATH, {"name": name})

	def link(self, doctype: str, name: str) -> dict:
		return {
			"name": name,
			"title": name,
			"url": build_url(self.path(doctype, name), self.url_settings),
		}

	def document(self, doctype: str, name: str) -> dict:
		data = {"doctype": doctype, "name": name, "title": name}
		if doctype == "Plan":
			data["subjects"] = [self.link("Subject", subject) for subject in self.plans[name]]
		elif doctype == "Subject":
			data["plan"] = self.subjects[name][0]
			data["units"] = [self.link("Unit", unit) for unit in self.subjects[name][1]]
		else:
			data["subject"], data["body"] = self.units[name]
		return data

	def write(self, docs: Iterable[tuple[str, str]]) -> list[str]:
		"""Render and write each document's file; the paths whose bytes changed."""
		changed = []
		for doctype, name in dict.fromkeys(docs):
			path = self.path(doctype, name)
			if self.store.write(path, canonical.dumps(self.document(doctype, name))).changed:
				changed.append(path)
		return changed

	def add_plan(self, plan: str, subjects: int, units: int, odd: Iterator[str] | None = None) -> list[str]:
		self.plans[plan] = []
		docs = [("Plan", plan)]
		for s in range(subjects):
			subject = f"{plan}-s{s}"
			self.plans[plan].append(subject)
			self.subjects[subject] = (plan, [])
			docs.append(("Subject", subject))
			for u in range(units):
				unit = (next(odd, None) if odd and u == 0 else None) or f"{subject}-u{u}"
				self.subjects[subject][1].append(unit)
				self.units[unit] = (subject, f"body of {unit}: " + "نص " * (u % 7 + 1))
				docs.append(("Unit", unit))
		return self.write(docs)

	def add_unit(self, subject: str, unit: str, body: str) -> list[str]:
		"""A new Unit: its file, and its Subject's, which lists it (on_update re-renders the parent)."""
		self.subjects[subject][1].append(unit)
		self.units[unit] = (subject, body)
		return self.write([("Unit", unit), ("Subject", subject)])

	def update_unit(self, unit: str, body: str) -> list[str]:
		self.units[unit] = (self.units[unit][0], body)
		return self.write([("Unit", unit)])

	def delete_unit(self, unit: str) -> tuple[str, list[str]]:
		"""Remove the Unit's file; its Subject is written again without it. Returns (removed, changed)."""
		path = self.path("Unit", unit)
		subject, _ = self.units.pop(unit)
		self.subjects[subject][1].remove(unit)
		self.store.remove(path)
		return path, self.write([("Subject", subject)])

	def delete_plan(self, plan: str) -> tuple[list[str], str]:
		"""Remove a Plan with its Subjects and Units: unit files one by one, the plan's folder at once."""
		removed = []
		for subject in self.plans.pop(plan):
			for unit in self.subjects.pop(subject)[1]:
				removed.append(self.path("Unit", unit))
				self.store.remove(removed[-1])
				del self.units[unit]
		folder = f"plans/{plan}"
		self.store.remove_tree(folder)
		return removed, folder

	def relink(self) -> list[str]:
		"""After a change of where URLs point, every file that lists links is rendered again."""
		return self.write([("Plan", p) for p in self.plans] + [("Subject", s) for s in self.subjects])

	def live(self) -> dict[str, bytes]:
		"""Every file the catalogue says exists, with its bytes on disk."""
		docs = [
			*(("Plan", p) for p in self.plans),
			*(("Subject", s) for s in self.subjects),
			*(("Unit", u) for u in self.units),
		]
		return {path: self.store.read(path) for path in (self.path(*doc) for doc in docs)}


class Fetcher:
	"""GET through one keep-alive connection per thread, as a browser reuses one."""

	def __init__(self, base_url: str):
		parts = urlsplit(base_url)
		self.host, self.port = parts.hostname, parts.port
		self._local = threading.local()

	def get(self, url: str) -> tuple[int, str, bytes]:
		parts = urlsplit(url)
		if (parts.hostname, parts.port) != (self.host, self.port):
			return 0, "", f"not this server: {url}".encode()
		conn = getattr(self._local, "conn", None)
		if conn is None:
			conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
		conn.request("GET", parts.path)
		response = conn.getresponse()
		return response.status, response.getheader("Content-Type", ""), response.read()

	def get_all(self, urls: Iterable[str]) -> list[tuple[int, str, bytes]]:
		with ThreadPoolExecutor(max_workers=16) as pool:
			return list(pool.map(self.get, urls))


class Drill:
	"""The scenario in five steps; each returns the facts a reader or a test checks."""

	def __init__(
		self,
		site_dir: Path,
		endpoint: CrashableEndpoint,
		nginx: Nginx,
		plans: int = 10,
		subjects: int = 9,
		units: int = 10,
		rounds: int = 5,
	):
		self.endpoint, self.nginx = endpoint, nginx
		self.shape, self.rounds = (plans, subjects, units), rounds
		site = site_dir / "sites" / SITE
		self.store = ContentStore(paths.content_root(site), site / "locks")
		self.catalogue = Catalogue(
			self.store, UrlSettings(local_domain=nginx.url, enable_cdn=True, cdn_base_url=CDN_BASE)
		)
		config = S3Config(
			bucket=BUCKET,
			endpoint_url=endpoint.url,
			key_prefix="memora",
			access_key=ACCESS_KEY,
			secret_key=SECRET_KEY,
			addressing_style="path",
			connect_timeout=1.0,
		)
		self.bucket = CdnBucket(config)
		self.uploader = Uploader(self.store, self.bucket)
		self.synced: dict[str, str] = {}  # path -> sha256 of what an upload confirmed on the CDN
		self.errors: list[Exception] = []
		self.fetcher = Fetcher(nginx.url)
		self.rng = random.Random(5)
		self.before_outage: dict[str, str] = {}
		self.removed: set[str] = set()
		self.live: dict[str, bytes] = {}
		self.seconds: dict[str, float] = {}

	def send(self, uploads: Iterable[str] = (), deletes: Iterable[str] = ()) -> int:
		"""Try each upload and delete once, as a drain pass does; `synced` follows what succeeded.

		Returns how many failed; their errors are kept in `errors`.
		"""
		failed = 0
		for path, error in self.bucket.delete_many(sorted(set(deletes))).items():
			if error:
				failed += 1
				self.errors.append(error)
			else:
				self.synced.pop(path, None)
		for result in self.uploader.upload_many(sorted(set(uploads))):
			if result.ok:
				self.synced[result.path] = result.sha256
			else:
				failed += 1
				self.errors.append(result.error)
		return failed

	@contextmanager
	def timed(self, step: str) -> Iterator[None]:
		started = time.perf_counter()
		yield
		self.seconds[step] = time.perf_counter() - started

	def normal(self) -> dict:
		"""1. Normal operation: every document written, uploaded, and proven identical on the CDN."""
		with self.timed("normal"):
			self.endpoint.create_bucket(BUCKET)
			plans, subjects, units = self.shape
			odd = iter(ODD_NAMES)
			written = []
			for p in range(plans):
				written += self.catalogue.add_plan(f"plan-{p:02}", subjects, units, odd)
			failed = self.send(written)
			report = verify(self.store.root, self.bucket)
		self.before_outage = dict(self.synced)
		first = json.loads(self.store.read(self.catalogue.path("Plan", "plan-00")))["subjects"][0]
		return {
			"documents": len(self.catalogue.plans) + len(self.catalogue.subjects) + len(self.catalogue.units),
			"written": len(written),
			"failed": failed,
			"synced": len(self.synced),
			"first_link": first["url"],
			"report": report,
		}

	def outage(self) -> dict:
		"""2. The endpoint dies (SIGKILL). Content keeps changing; every upload and delete is tried and fails."""
		with self.timed("outage"):
			self.endpoint.kill()
			try:
				self.bucket.head(self.catalogue.path("Plan", "plan-00"))
				probe = None
			except CdnError as e:
				probe = e
			rounds = [self._outage_round(n) for n in range(self.rounds)]
		return {
			"probe": probe,
			"rounds": rounds,
			"errors": list(self.errors),
			"synced": dict(self.synced),
		}

	def _outage_round(self, n: int) -> dict:
		catalogue, rng = self.catalogue, self.rng
		changed, deleted = [], []
		for i in range(4):
			name = f"وحدة جديدة {n}-{i}" if i == 0 else f"new-{n}-{i}"
			changed += catalogue.add_unit(rng.choice(sorted(catalogue.subjects)), name, f"new in {n}")
		for unit in rng.sample(sorted(catalogue.units), 4):
			changed += catalogue.update_unit(unit, f"{unit} updated in round {n}")
		for unit in rng.sample(sorted(catalogue.units), 2):
			path, parent = catalogue.delete_unit(unit)
			deleted.append(path)
			changed += parent
		if n == 1:
			changed += catalogue.add_plan("plan-new", 2, 3)
		if n == 3:  # a whole plan goes: its units one by one, its folder (manifest, subjects) at once
			victim = sorted(catalogue.plans)[-2]
			unit_paths, folder = catalogue.delete_plan(victim)
			deleted += unit_paths
			deleted += [p for p in self.synced if p.startswith(folder + "/")]
		self.removed.update(deleted)
		changed = [path for path in dict.fromkeys(changed) if path not in self.removed]
		failed = self.send(changed, deleted)
		return {"changed": len(changed), "attempted": len(changed) + len(set(deleted)), "failed": failed}

	def fallback(self) -> dict:
		"""3. Local Fallback Mode: URLs point at this server; files that list links are rendered again."""
		with self.timed("fallback"):
			self.catalogue.url_settings = UrlSettings(
				local_domain=self.nginx.url, enable_cdn=True, cdn_base_url=CDN_BASE, local_fallback_mode=True
			)
			relinked = self.catalogue.relink()
			failed = self.send(relinked)
		self.live = self.catalogue.live()
		return {
			"relinked": len(relinked),
			"failed": failed,
			"live": len(self.live),
			"on_disk_not_live": set(local_files(self.store.root)) ^ set(self.live),
			"removed_but_live": self.removed & set(self.live),
		}

	def serve(self) -> dict:
		"""4. Every live file through nginx, then every link a client follows from the manifests."""
		with self.timed("serve"):
			ordered = sorted(self.live)
			urls = [build_url(path, self.catalogue.url_settings) for path in ordered]
			wrong_urls = [
				url
				for url, path in zip(urls, ordered, strict=True)
				if url != f"{self.nginx.url}/files/memora_content/{paths.url_path(path)}"
			]
			wrong = [
				(path, status, content_type)
				for path, (status, content_type, body) in zip(
					ordered, self.fetcher.get_all(urls), strict=True
				)
				if status != 200 or body != self.live[path] or not content_type.startswith("application/json")
			]
			gone_urls = [build_url(path, self.catalogue.url_settings) for path in sorted(self.removed)]
			gone = [status for status, _, _ in self.fetcher.get_all(gone_urls)]
			by_url = dict(zip(urls, ordered, strict=True))
			manifests = [self.catalogue.path("Plan", plan) for plan in self.catalogue.plans]
			reached, bad_links, frontier = set(), [], manifests
			while frontier:
				links = [
					link
					for path in frontier
					for key in ("subjects", "units")
					for link in json.loads(self.live[path]).get(key, [])
				]
				frontier = []
				for link, (status, _, body) in zip(
					links, self.fetcher.get_all(link["url"] for link in links), strict=True
				):
					path = by_url.get(link["url"])
					if (
						not path
						or status != 200
						or body != self.live[path]
						or json.loads(body)["name"] != link["name"]
					):
						bad_links.append((link["url"], status))
						continue
					reached.add(path)
					if path.startswith("plans/"):
						frontier.append(path)
		return {
			"served": len(ordered) - len(wrong),
			"wrong_urls": wrong_urls,
			"wrong": wrong,
			"gone": len(gone),
			"gone_not_404": [s for s in gone if s != 404],
			"links_followed": len(reached) + len(bad_links),
			"bad_links": bad_links,
			"unreached": set(self.live) - set(manifests) - reached,
		}

	def recover(self) -> dict:
		"""5. The endpoint returns with what it held. Verify says where it differs from the disk; the
		missing and mismatched paths go up, the extra ones are deleted; verify then finds no difference."""
		with self.timed("restart"):
			self.endpoint.restart()
		with self.timed("recover"):
			found = verify(self.store.root, self.bucket)
			stale = [*found.missing, *(m.path for m in found.mismatched)]
			failed = self.send(stale, found.extra)
			after = verify(self.store.root, self.bucket)
		# What the CDN should lack, hold stale or hold too many, by what the drill did since it was in sync.
		on_cdn, live = set(self.before_outage), set(self.live)
		return {
			"found": {
				"missing": set(found.missing),
				"mismatched": {m.path for m in found.mismatched},
				"extra": set(found.extra),
			},
			"expected": {
				"missing": live - on_cdn,
				"mismatched": {
					p for p in live & on_cdn if self.before_outage[p] != canonical.sha256(self.live[p])
				},
				"extra": on_cdn - live,
			},
			"uploaded": len(stale),
			"deleted": len(found.extra),
			"failed": failed,
			"report": after,
		}
