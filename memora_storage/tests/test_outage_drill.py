"""Outage drill on a real site (SC-004, SC-005): the CDN endpoint becomes unreachable while documents
keep being saved, updated and deleted; nothing is lost, and in Local Fallback Mode every written
content file is served by the web server with its exact bytes. When the endpoint is back, the rows
sync and the bucket verifies clean.

The web server is nginx with bench's static-file rule over this bench's `sites` folder
(memora_storage/tests/nginx.py), or, where nginx is not installed, the Frappe dev server. The S3
endpoint is the moto server whose URL `run-tests` passes in MEMORA_TEST_S3_ENDPOINT.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import boto3
import frappe
import requests
from botocore.config import Config

from memora_storage import api, cdn_sync, content_files, tasks
from memora_storage.tests.nginx import Nginx, find_nginx
from memora_storage.tests.utils import ContentTestCase
from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, S3Config
from memora_storage.utils.verify import verify

ENDPOINT = os.environ.get("MEMORA_TEST_S3_ENDPOINT", "")
KEYS = {"access_key_id": "AKIAMEMORATEST000001", "secret_access_key": "memora-test-secret-0001"}
KEY_PREFIX = "drill"


def _free_port() -> int:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def _start_dev_server() -> tuple[subprocess.Popen, str]:
	"""`bench serve` for this site on a free port (what a developer runs), when nginx is missing."""
	port = _free_port()
	server = subprocess.Popen(
		[
			*(sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "--site", frappe.local.site),
			*("serve", "--port", str(port), "--noreload"),
		],
		cwd=frappe.local.sites_path,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	base = f"http://127.0.0.1:{port}"
	deadline = time.monotonic() + 60
	while time.monotonic() < deadline:
		try:
			requests.get(f"{base}/api/method/ping", timeout=2)
			return server, base
		except requests.ConnectionError:
			time.sleep(0.3)
	server.kill()
	raise RuntimeError("the dev server did not start within 60 s")


@unittest.skipUnless(
	ENDPOINT, "MEMORA_TEST_S3_ENDPOINT is not set: run these through ./run-tests, which starts moto"
)
class TestOutageDrill(ContentTestCase):
	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		cls.served_by_nginx = find_nginx() is not None
		if cls.served_by_nginx:
			prefix = tempfile.mkdtemp(prefix="memora-drill-nginx-")
			cls.addClassCleanup(shutil.rmtree, prefix, ignore_errors=True)
			server = Nginx(os.path.abspath(frappe.local.sites_path), frappe.local.site, prefix).start()
			cls.addClassCleanup(server.stop)
			cls.base = server.url
		else:
			process, cls.base = _start_dev_server()
			cls.addClassCleanup(process.wait)
			cls.addClassCleanup(process.kill)
		cls.http = requests.Session()
		cls.addClassCleanup(cls.http.close)

	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-drill-{self.tag.lower()}"
		self.s3 = boto3.session.Session().client(
			"s3",
			endpoint_url=ENDPOINT,
			region_name="us-east-1",
			aws_access_key_id=KEYS["access_key_id"],
			aws_secret_access_key=KEYS["secret_access_key"],
			config=Config(s3={"addressing_style": "path"}),
		)
		self.s3.create_bucket(Bucket=self.bucket)
		self.use_endpoint(ENDPOINT)
		frappe.db.delete("Content File")
		frappe.db.commit()

	def tearDown(self) -> None:
		super().tearDown()
		tasks.relink_all()  # the site's files linked to this test's web server; point them back

	def use_endpoint(self, endpoint: str, fallback: bool = False) -> None:
		doc = frappe.get_single("CDN Settings")
		doc.update(
			{
				"enable_cdn": 1,
				"cdn_base_url": "https://cdn.example.com",
				"local_fallback_mode": int(fallback),
				"local_domain": self.base,
				"bucket": self.bucket,
				"endpoint_url": endpoint,
				"key_prefix": KEY_PREFIX,
				"min_free_disk_percent": 0,
				**KEYS,
			}
		)
		doc.save(ignore_permissions=True)
		frappe.db.commit()

	def rows(self, **filters) -> list[frappe._dict]:
		return frappe.get_all(
			"Content File",
			filters=filters,
			fields=["name", "path", "local_status", "sha256", "sync_operation", "sync_status", "last_error"],
		)

	def sync_due(self) -> dict[str, int]:
		"""One pass of the upload jobs over every row, at the moment the retry schedule makes them all due."""
		due = frappe.db.sql("select max(next_attempt_at) from `tabContent File`")[0][0]
		return cdn_sync.sync_rows(frappe.get_all("Content File", pluck="name"), now=due)

	def get(self, url: str) -> requests.Response:
		self.assertTrue(url.startswith(f"{self.base}/files/memora_content/"), url)
		return self.http.get(url, timeout=10)

	def test_outage_drill(self):
		# 1. Content saved through documents reaches the CDN; the site's other content is sent too.
		plans = {f"plan-{self.tag}-{p}": {} for p in range(2)}
		for plan in plans:
			self.make("Plan", plan, commit=False)
			for s in range(3):
				subject = self.make("Subject", f"{plan}-s{s}", commit=False, plan=plan).name
				plans[plan][subject] = [
					self.make("Unit", name, commit=False, subject=subject, body=f"body of {name}").name
					for name in (f"وحدة {subject} {u}" if u == 0 else f"{subject}-u{u}" for u in range(4))
				]
		frappe.db.commit()
		self.assertEqual(self.sync_due()["synced"], 2 + 6 + 24)
		cdn_sync.resync(cdn_sync.verify_bucket())
		self.sync_due()
		self.assertEqual(cdn_sync.verify_bucket().status, "OK")

		# 2. The endpoint becomes unreachable; documents keep changing and every change waits as a row.
		self.use_endpoint(_closed_endpoint())
		units = [unit for subjects in plans.values() for names in subjects.values() for unit in names]
		deleted_docs = []
		for round_ in range(3):
			subject = next(iter(plans[next(iter(plans))]))
			for n in range(2):
				self.make("Unit", f"new-{self.tag}-{round_}-{n}", commit=False, subject=subject, body="new")
			for name in units[round_ * 3 : round_ * 3 + 2]:
				doc = frappe.get_doc("Unit", name)
				doc.body = f"updated in round {round_}"
				doc.save()
			doc = frappe.get_doc("Unit", units[round_ * 3 + 2])
			doc.delete()
			deleted_docs.append(doc)
			if round_ == 2:  # a whole plan goes: its units, subjects and the plan itself
				last = list(plans)[-1]
				for subject_name, unit_names in plans.pop(last).items():
					for name in unit_names:
						if frappe.db.exists("Unit", name):
							frappe.delete_doc("Unit", name)
					frappe.delete_doc("Subject", subject_name)
				frappe.delete_doc("Plan", last)
			frappe.db.commit()
			outcome = self.sync_due()
			self.assertEqual(outcome["synced"], 0)
			self.assertGreater(outcome["retry"], 0)

		pending = self.rows(sync_status="Pending")
		self.assertTrue(pending)
		for row in pending:
			self.assertIn("127.0.0.1", row.last_error or "", row.path)
		self.assertFalse(self.rows(sync_status="Failed"))
		for row in self.rows(local_status="Written"):
			self.assertEqual(row.sha256, canonical.sha256(self.store.read(row.path)), row.path)

		# Nothing lost: every difference between the disk and the bucket is a Pending row saying what to do.
		report = verify(self.store.root, self.direct_bucket())
		waiting = {row.path: row.sync_operation for row in pending}
		for path in [*report.missing, *(m.path for m in report.mismatched)]:
			self.assertEqual(waiting.get(path), "Upload", path)
		for path in report.extra:
			self.assertEqual(waiting.get(path), "Delete", path)
		self.assertTrue(report.missing and report.mismatched and report.extra)

		# 3. Local Fallback Mode: URLs point at this server; the files that list links are rendered again.
		self.use_endpoint(_closed_endpoint(), fallback=True)
		tasks.relink_all()  # the long-queue job the settings save enqueued
		self.sync_due()
		written = self.rows(local_status="Written")
		for row in written:
			response = self.get(api.get_content_url(row.path))
			self.assertEqual(response.status_code, 200, row.path)
			self.assertEqual(response.content, self.store.read(row.path), row.path)
			if self.served_by_nginx:
				self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
		gone = self.rows(local_status="Deleted")
		self.assertGreaterEqual(len(gone), 3 + 1 + 3 + 4 * 3)
		for row in gone:
			self.assertFalse(self.store.exists(row.path), row.path)
			status = self.get(api.get_content_url(row.path)).status_code
			# The dev server answers a missing /files/ path with 500 (Frappe's StaticDataMiddleware).
			self.assertIn(status, (404,) if self.served_by_nginx else (404, 500), row.path)

		# A client starts at a manifest and follows the links: every one answers with the file's bytes.
		for plan in plans:
			for subject_link in self.get(api.get_content_url(f"plans/{plan}/manifest.json")).json()[
				"subjects"
			]:
				subject = self.get(subject_link["url"])
				self.assertEqual(subject.status_code, 200, subject_link)
				for unit_link in subject.json()["units"]:
					unit = self.get(unit_link["url"])
					self.assertEqual(unit.status_code, 200, unit_link)
					self.assertEqual(unit.json()["name"], unit_link["name"])

		# 4. The endpoint is back: the backlog syncs and the bucket matches the disk.
		self.use_endpoint(ENDPOINT, fallback=True)
		self.sync_due()
		self.assertEqual(
			{(row.sync_status, row.local_status) for row in self.rows()}, {("Synced", "Written")}
		)
		for row in frappe.get_all("Content File", fields=["path", "sha256", "synced_sha256"]):
			self.assertEqual(row.synced_sha256, row.sha256, row.path)
		self.assertEqual(cdn_sync.verify_bucket().status, "OK")

	def direct_bucket(self) -> CdnBucket:
		"""The bucket reached directly, behind the back of the unreachable settings."""
		return CdnBucket(
			S3Config(
				bucket=self.bucket,
				endpoint_url=ENDPOINT,
				key_prefix=KEY_PREFIX,
				access_key=KEYS["access_key_id"],
				secret_key=KEYS["secret_access_key"],
				addressing_style="path",
			)
		)


def _closed_endpoint() -> str:
	"""A URL where nothing listens: connections are refused, as from a CDN that is down."""
	return f"http://127.0.0.1:{_free_port()}"
