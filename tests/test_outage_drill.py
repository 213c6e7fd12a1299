"""Outage drill (SC-004, SC-005): the CDN endpoint dies, content keeps changing, and every file stays
reachable from the local server, through a real nginx, with the exact bytes on disk. When the
endpoint returns, the backlog goes up and the bucket matches the disk again (SC-003).

The parts are real: a moto S3 server in its own process, killed with SIGKILL; the content store on
a real folder laid out as a site (`sites/SITE/public/files/memora_content`); nginx from the
distribution, configured with bench's own static-file rule (memora_storage/tests/nginx.py). The
moto server records every write it receives, and the restarted process replays them: the endpoint
comes back with the objects it held, as a real bucket would after an outage.

Files are rendered the way the app renders them (content.py): canonical JSON, a plan manifest
listing its subjects with their URLs, a subject listing its units with their URLs, every URL from
the resolver over one settings snapshot.
"""

import http.client
import json
import random
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import make_config, raw_client
from s3_helpers import MotoServer

from memora_storage.tests.nginx import NOT_INSTALLED, Nginx, bench_template, bench_template_drift, find_nginx
from memora_storage.utils import canonical, paths
from memora_storage.utils.resolver import UrlSettings, get_content_url
from memora_storage.utils.s3 import CdnBucket, CdnError, CdnErrorKind
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import local_files, verify

SITE = "drill.localhost"
BUCKET = "memora-outage-drill"
CDN_BASE = "https://cdn.example.com/memora"
PLAN_PATH = "plans/{name}/manifest.json"
SUBJECT_PATH = "plans/{plan}/subjects/{name}.json"
UNIT_PATH = "units/{name}.json"
PLANS, SUBJECTS_PER_PLAN, UNITS_PER_SUBJECT = 10, 9, 10  # 10 + 90 + 900 = 1,000 documents
# Names a URL must encode: Arabic script, a space, '#', '?', '%'.
ODD_NAMES = ("وحدة الأعداد 1", "unit #2?", "50% off", "الجملة الاسمية")
WRITE_METHODS = ("PUT", "POST", "DELETE")

pytestmark = pytest.mark.skipif(find_nginx() is None, reason=NOT_INSTALLED)


class CrashableEndpoint(MotoServer):
	"""moto that records every request it serves, so a process started after a SIGKILL can replay its writes."""

	def __init__(self, workdir: Path):
		super().__init__(workdir / "moto.log")
		self.recording = workdir / "moto-recording.jsonl"

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
		request = urllib.request.Request(
			f"{self.url}/moto-api/recorder/replay-recording", data=b"", method="POST"
		)
		urllib.request.urlopen(request, timeout=120).read()


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CrashableEndpoint]:
	"""A moto server of this test's own: the session's server must survive the drill."""
	server = CrashableEndpoint(tmp_path)
	monkeypatch.setenv("MOTO_ENABLE_RECORDING", "true")
	monkeypatch.setenv("MOTO_RECORDER_FILEPATH", str(server.recording))
	server.start()
	raw_client(server.url).create_bucket(Bucket=BUCKET)
	yield server
	server.stop()


@pytest.fixture
def site_dir() -> Iterator[Path]:
	"""`sites/` with one site, readable by nginx workers running as another user (pytest's tmp is 0700)."""
	top = Path(tempfile.mkdtemp(prefix="memora-drill-"))
	top.chmod(0o755)
	(top / "sites" / SITE).mkdir(parents=True)
	yield top
	shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def nginx(site_dir: Path) -> Iterator[Nginx]:
	with Nginx(site_dir / "sites", SITE, site_dir / "nginx") as server:
		yield server


@dataclass
class Catalogue:
	"""Plans, Subjects and Units as the database holds them, rendered to files as content.py does."""

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
			"url": get_content_url(self.path(doctype, name), self.url_settings),
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
				unit = next(odd, None) if odd and u == 0 else None
				unit = unit or f"{subject}-u{u}"
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


@dataclass
class Sync:
	"""What reached the CDN, and the backlog of what could not (the Content File rows' job in the app)."""

	uploader: Uploader
	synced: dict[str, str] = field(default_factory=dict)  # path -> sha256 confirmed on the CDN
	uploads: set[str] = field(default_factory=set)
	deletes: set[str] = field(default_factory=set)
	folders: set[str] = field(default_factory=set)  # folders to delete with everything in them
	errors: list[Exception] = field(default_factory=list)

	def send(
		self, uploads: Iterable[str] = (), deletes: Iterable[str] = (), folders: Iterable[str] = ()
	) -> int:
		"""Try each change once, concurrently; what fails joins the backlog. Returns how many failed."""
		uploads, deletes, folders = set(uploads), set(deletes), set(folders)
		self.uploads -= deletes | {p for p in self.uploads for f in folders if p.startswith(f + "/")}
		failed = 0
		removals = [(path, False) for path in sorted(deletes)] + [
			(folder, True) for folder in sorted(folders)
		]
		with ThreadPoolExecutor(max_workers=16) as pool:
			outcomes = list(pool.map(self._remove, removals))
		for (path, is_folder), error in zip(removals, outcomes, strict=True):
			pending = self.folders if is_folder else self.deletes
			if error:
				failed += 1
				self.errors.append(error)
				pending.add(path)
				continue
			pending.discard(path)
			for gone in [p for p in self.synced if p == path or (is_folder and p.startswith(path + "/"))]:
				del self.synced[gone]
		for result in self.uploader.upload_many(sorted(uploads), self.synced):
			if result.ok:
				self.synced[result.path] = result.sha256
				self.uploads.discard(result.path)
			else:
				failed += 1
				self.errors.append(result.error)
				self.uploads.add(result.path)
		return failed

	def _remove(self, item: tuple[str, bool]) -> CdnError | None:
		path, is_folder = item
		try:
			self.uploader.bucket.delete_prefix(path) if is_folder else self.uploader.bucket.delete(path)
		except CdnError as e:
			return e
		return None

	def backlog(self) -> set[str]:
		"""Every path the CDN still has to receive or lose, folders spelled out by what they held."""
		in_folders = {p for p in self.synced for f in self.folders if p.startswith(f + "/")}
		return self.uploads | self.deletes | in_folders

	def flush(self) -> int:
		"""Send the whole backlog, as the retry schedule does once the endpoint answers again."""
		return self.send(set(self.uploads), set(self.deletes), set(self.folders))


class Fetcher:
	"""GET through one keep-alive connection per thread, as a browser would reuse one."""

	def __init__(self, base_url: str):
		parts = urlsplit(base_url)
		self.host, self.port = parts.hostname, parts.port
		self._local = threading.local()

	def get(self, url: str) -> tuple[int, str, bytes]:
		parts = urlsplit(url)
		assert (parts.hostname, parts.port) == (self.host, self.port), url
		conn = getattr(self._local, "conn", None)
		if conn is None:
			conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
		conn.request("GET", parts.path)
		response = conn.getresponse()
		return response.status, response.getheader("Content-Type", ""), response.read()

	def get_all(self, urls: Iterable[str]) -> list[tuple[int, str, bytes]]:
		with ThreadPoolExecutor(max_workers=16) as pool:
			return list(pool.map(self.get, urls))


def test_nginx_config_keeps_bench_rule():
	"""The drill's nginx serves `/files/` with the very rule `bench setup nginx` writes."""
	template = bench_template()
	if template is None:
		pytest.skip("frappe-bench is not installed (no `bench` on PATH): no template to compare with")
	assert bench_template_drift(template) == []


def test_cdn_outage_drill(endpoint: CrashableEndpoint, site_dir: Path, nginx: Nginx):
	rng = random.Random(5)
	site = site_dir / "sites" / SITE
	store = ContentStore(paths.content_root(site), site / "locks")
	catalogue = Catalogue(store, UrlSettings(local_domain=nginx.url, enable_cdn=True, cdn_base_url=CDN_BASE))
	bucket = CdnBucket(make_config(endpoint.url, BUCKET, key_prefix="memora", connect_timeout=1.0))
	sync = Sync(Uploader(store, bucket))

	# 1. Normal operation: 1,000 documents written, uploaded, and proven identical on the CDN.
	odd = iter(ODD_NAMES)
	written = []
	for p in range(PLANS):
		written += catalogue.add_plan(f"plan-{p:02}", SUBJECTS_PER_PLAN, UNITS_PER_SUBJECT, odd)
	documents = len(catalogue.plans) + len(catalogue.subjects) + len(catalogue.units)
	assert documents >= 1000 and len(written) == documents
	manifest = json.loads(store.read(catalogue.path("Plan", "plan-00")))
	assert manifest["subjects"][0]["url"].startswith(CDN_BASE + "/plans/plan-00/subjects/")
	assert sync.send(written) == 0 and len(sync.synced) == documents
	report = verify(store.root, bucket)
	assert report.clean and report.matched == report.local_count == documents
	before_outage = dict(sync.synced)

	# 2. The endpoint dies. Content keeps changing; every upload and delete fails and joins the backlog.
	endpoint.kill()
	with pytest.raises(CdnError) as unreachable:
		bucket.head(catalogue.path("Plan", "plan-00"))
	assert unreachable.value.kind == CdnErrorKind.UNREACHABLE
	removed: set[str] = set()
	for round_ in range(5):
		changed, deleted, folders = [], [], []
		for n in range(4):
			name = f"وحدة جديدة {round_}-{n}" if n == 0 else f"new-{round_}-{n}"
			changed += catalogue.add_unit(rng.choice(sorted(catalogue.subjects)), name, f"new in {round_}")
		for unit in rng.sample(sorted(catalogue.units), 4):
			changed += catalogue.update_unit(unit, f"{unit} updated in round {round_}")
		for unit in rng.sample(sorted(catalogue.units), 2):
			path, parent = catalogue.delete_unit(unit)
			deleted.append(path)
			changed += parent
		if round_ == 1:
			changed += catalogue.add_plan("plan-new", 2, 3)
		if round_ == 3:
			unit_paths, folder = catalogue.delete_plan("plan-09")
			deleted += unit_paths
			folders.append(folder)
			removed.update(p for p in before_outage if p.startswith(folder + "/"))
		removed.update(deleted)
		changed = [path for path in dict.fromkeys(changed) if path not in removed]
		# Every attempt fails, except a file whose bytes went back to what the CDN has: nothing to send.
		to_send = [p for p in changed if sync.synced.get(p) != canonical.sha256(store.read(p))]
		assert sync.send(changed, deleted, folders) == len(to_send) + len(deleted) + len(folders)
	assert all(isinstance(e, CdnError) and e.kind == CdnErrorKind.UNREACHABLE for e in sync.errors)
	assert sync.synced == before_outage

	# 3. Fallback: URLs point at this server, and the files that list links are rendered again.
	catalogue.url_settings = UrlSettings(
		local_domain=nginx.url, enable_cdn=True, cdn_base_url=CDN_BASE, local_fallback_mode=True
	)
	relinked = catalogue.relink()
	assert sync.send(relinked) == len(relinked)

	# Nothing lost: the disk holds exactly the catalogue, and the backlog covers every difference from the CDN.
	live = catalogue.live()
	assert set(local_files(store.root)) == set(live)
	assert removed.isdisjoint(live)
	cdn_differs = {p for p in live if before_outage.get(p) != canonical.sha256(live[p])}
	cdn_differs |= set(before_outage) - set(live)
	assert cdn_differs <= sync.backlog()

	# 4. Every live file through nginx: 200, JSON, the exact bytes on disk; deleted ones 404.
	fetcher = Fetcher(nginx.url)
	ordered = sorted(live)
	urls = [get_content_url(path, catalogue.url_settings) for path in ordered]
	for url, path in zip(urls, ordered, strict=True):
		assert url == f"{nginx.url}/files/memora_content/{paths.url_path(path)}"
	for path, (status, content_type, body) in zip(ordered, fetcher.get_all(urls), strict=True):
		assert (status, body) == (200, live[path]), path
		assert content_type.startswith("application/json"), (path, content_type)
	gone = fetcher.get_all(get_content_url(path, catalogue.url_settings) for path in sorted(removed))
	assert [status for status, _, _ in gone] == [404] * len(removed)

	# Walk the links a client follows, manifests → subjects → units: each one 200 and the named file.
	by_url = dict(zip(urls, ordered, strict=True))
	manifests = [catalogue.path("Plan", plan) for plan in catalogue.plans]
	reached: set[str] = set()
	frontier = manifests
	while frontier:
		links = [
			link
			for path in frontier
			for key in ("subjects", "units")
			for link in json.loads(live[path]).get(key, [])
		]
		frontier = []
		for link, (status, _, body) in zip(links, fetcher.get_all(l["url"] for l in links), strict=True):
			path = by_url.get(link["url"])
			assert path and status == 200 and body == live[path], link
			assert json.loads(body)["name"] == link["name"]
			reached.add(path)
			if path.startswith("plans/"):
				frontier.append(path)
	assert reached == set(live) - set(manifests)

	# 5. The endpoint returns with what it held; the backlog goes up and the CDN matches the disk.
	endpoint.restart()
	report = verify(store.root, bucket)
	assert {*report.missing, *report.extra, *(m.path for m in report.mismatched)} == cdn_differs
	assert sync.flush() == 0
	assert sync.backlog() == set()
	report = verify(store.root, bucket)
	assert report.clean, (report.missing[:5], report.extra[:5], report.mismatched[:5])
	assert report.matched == report.local_count == report.remote_count == len(live)
