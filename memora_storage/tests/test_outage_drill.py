"""Outage drill on a real site (SC-004, SC-005): the CDN endpoint becomes unreachable while documents
keep being saved, updated and deleted; nothing is lost, and in Local Fallback Mode every written
content file is served by the web server with its exact bytes. When the endpoint is back, the rows
sync and the bucket verifies clean.

The web server is nginx with bench's static-file rule over this bench's `sites` folder
(memora_storage/tests/nginx.py), or, where nginx is not installed, the Frappe dev server. The S3
endpoint is the moto server whose URL `run-tests` passes in MEMORA_TEST_S3_ENDPOINT.
"""

import unittest

import frappe
import requests

from memora_storage import api, relink, uploads, verification
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_KEYS,
	S3_SKIP_REASON,
	ContentTestCase,
	closed_port_url,
	s3_client,
	serve_site_files,
	use_endpoint,
)
from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, S3Config
from memora_storage.utils.verify import verify

KEY_PREFIX = "drill"


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestOutageDrill(ContentTestCase):
	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		cls.base, cls.served_by_nginx = serve_site_files(cls)
		cls.http = requests.Session()
		cls.addClassCleanup(cls.http.close)

	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-drill-{self.tag.lower()}"
		self.s3 = s3_client()
		self.s3.create_bucket(Bucket=self.bucket)
		self.use_endpoint(S3_ENDPOINT)
		frappe.db.delete("Content File")
		frappe.db.commit()

	def tearDown(self) -> None:
		super().tearDown()
		relink.relink()  # the site's files linked to this test's web server; point them back

	def use_endpoint(self, endpoint: str, fallback: bool = False) -> None:
		use_endpoint(
			endpoint,
			self.bucket,
			local_fallback_mode=int(fallback),
			local_domain=self.base,
			key_prefix=KEY_PREFIX,
			deletion_brake=0,  # the default: the drill's deletes are far below it
		)

	def rows(self, **filters) -> list[frappe._dict]:
		return frappe.get_all(
			"Content File",
			filters=filters,
			fields=[
				"name",
				"path",
				"parent_path",
				"local_status",
				"sha256",
				"sync_operation",
				"sync_status",
				"last_error",
			],
		)

	def sync_due(self) -> dict[str, int]:
		"""One pass of the upload jobs over every row, at the moment the retry schedule makes them all due."""
		due = frappe.db.sql("select max(next_attempt_at) from `tabContent File`")[0][0]
		return uploads.drain(now=due)

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
		verification.resync(verification.verify())
		self.sync_due()
		self.assertEqual(verification.verify().status, "Healthy")

		# 2. The endpoint becomes unreachable; documents keep changing and every change waits as a row.
		self.use_endpoint(closed_port_url())
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
		waiting_paths = {row.path for row in pending}
		for row in pending:
			if row.last_error:
				self.assertIn("127.0.0.1", row.last_error, row.path)
			else:  # a delete waits, untried, until the file listing it has gone from the CDN first
				self.assertEqual(row.sync_operation, "Delete", row.path)
				self.assertIn(row.parent_path, waiting_paths, row.path)
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
		self.use_endpoint(closed_port_url(), fallback=True)
		relink.relink()  # the long-queue job the settings save enqueued
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

		# 4. The endpoint is back, Local Fallback Mode still on: nobody reads the CDN, so uploads wait.
		self.use_endpoint(S3_ENDPOINT, fallback=True)
		self.assertEqual(self.sync_due()["claimed"], 0)
		self.assertTrue(self.rows(sync_status="Pending"))
		self.assertEqual(uploads.waiting(), "Local Fallback Mode is on")
		# Turned off: files are re-linked first, then the backlog syncs and the bucket matches the disk.
		self.use_endpoint(S3_ENDPOINT)
		relink.relink()
		self.sync_due()
		self.assertEqual(
			{(row.sync_status, row.local_status) for row in self.rows()}, {("Synced", "Written")}
		)
		for row in frappe.get_all("Content File", fields=["path", "sha256", "synced_sha256"]):
			self.assertEqual(row.synced_sha256, row.sha256, row.path)
		self.assertEqual(verification.verify().status, "Healthy")

	def direct_bucket(self) -> CdnBucket:
		"""The bucket reached directly, behind the back of the unreachable settings."""
		return CdnBucket(
			S3Config(
				bucket=self.bucket,
				endpoint_url=S3_ENDPOINT,
				key_prefix=KEY_PREFIX,
				access_key=S3_KEYS["access_key_id"],
				secret_key=S3_KEYS["secret_access_key"],
				addressing_style="path",
			)
		)
