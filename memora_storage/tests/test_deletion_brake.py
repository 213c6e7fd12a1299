"""The brake on deletion, on a real site against a real S3 endpoint: a bucket full of objects the
site does not know is reported and kept until an administrator confirms, then exactly those go; a
folder delete above the threshold waits the same way; a change of Key Prefix deletes nothing."""

import unittest
from concurrent.futures import ThreadPoolExecutor
from unittest.mock import patch

import frappe
from frappe.utils import now_datetime

from memora_storage import brake, content_files, reports, uploads, verification
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_SKIP_REASON,
	ContentTestCase,
	s3_client,
	use_endpoint,
)
from memora_storage.utils import canonical
from memora_storage.utils.store import WriteResult

PREFIX = "content"
UNKNOWN = 1000


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestDeletionBrake(ContentTestCase):
	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-brake-{self.tag.lower()}"
		self.s3 = s3_client()
		self.s3.create_bucket(Bucket=self.bucket)
		self.use()
		frappe.db.delete("Content File")
		frappe.db.delete("Content Health Report", {"scope": brake.SCOPE})
		frappe.db.commit()
		frappe.cache.delete_value(brake.CONFIRMED)

	def tearDown(self) -> None:
		self.use()  # the brake back to its default for the suites that follow
		super().tearDown()

	def use(self, **values) -> None:
		use_endpoint(S3_ENDPOINT, self.bucket, **{"key_prefix": PREFIX, "deletion_brake": 0, **values})

	def keys(self, prefix: str = PREFIX) -> set[str]:
		keys = set()
		for page in self.s3.get_paginator("list_objects_v2").paginate(
			Bucket=self.bucket, Prefix=f"{prefix}/"
		):
			keys |= {item["Key"] for item in page.get("Contents", [])}
		return keys

	def put(self, keys: list[str]) -> None:
		with ThreadPoolExecutor(16) as pool:
			list(pool.map(lambda key: self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"{}"), keys))

	def brake_report(self, source: str) -> "frappe.Document":
		name = frappe.db.get_value(
			"Content Health Report", {"scope": brake.SCOPE, "deletion_source": source}, "name"
		)
		self.assertTrue(name, f"no Deletion Brake report for {source}")
		return frappe.get_doc("Content Health Report", name)

	def told(self, report: "frappe.Document") -> bool:
		return bool(
			frappe.db.exists(
				"Notification Log",
				{
					"document_name": report.name,
					"subject": ["like", "%CDN deletions wait for your confirmation%"],
				},
			)
		)

	def test_a_bucket_of_unknown_objects_is_reported_kept_and_deleted_only_once_confirmed(self):
		unknown = [f"{PREFIX}/old-site/u{n:04}.json" for n in range(UNKNOWN)]
		self.put(unknown)
		mine = f"units/brake-{self.tag}.json"
		data = canonical.dumps({"brake": self.tag})
		self.store.write(mine, data)
		self.addCleanup(self.store.remove, mine)
		self.put([f"{PREFIX}/{mine}"])  # a file this site has: never deleted
		self.s3.put_object(Bucket=self.bucket, Key="elsewhere/x.json", Body=b"{}")  # outside the prefix

		report = verification.verify()
		extra = {p.path for p in reports.report_problems(report) if p.problem == "Extra on CDN"}
		self.assertEqual(extra, {key.removeprefix(f"{PREFIX}/") for key in unknown})
		self.assertEqual(len(self.keys()), UNKNOWN + 1)  # verification deletes nothing

		self.assertEqual(brake.delete_extra(report), 0)  # 1,000 > max(256, 10 % of 1,001)
		self.assertEqual(len(self.keys()), UNKNOWN + 1)
		held = self.brake_report(brake.VERIFICATION)
		listed = {p.path for p in reports.report_problems(held) if p.problem == brake.PROBLEM}
		self.assertEqual(listed, extra)  # the dry-run list
		self.assertTrue(self.told(held))

		self.assertEqual(brake.confirm(held), UNKNOWN)
		self.assertEqual(self.keys(), {f"{PREFIX}/{mine}"})  # exactly those went
		self.assertTrue(self.s3.head_object(Bucket=self.bucket, Key="elsewhere/x.json"))
		self.assertEqual(frappe.db.get_value("Content Health Report", held.name, "deletion_confirmed"), 1)

	def test_a_folder_delete_above_the_threshold_waits_for_confirmation(self):
		self.use(deletion_brake=5)
		folder = f"units/brake-folder-{self.tag}"
		paths = [f"{folder}/u{n}.json" for n in range(8)]
		for path in paths:
			data = canonical.dumps({"p": path})
			content_files.record_write(WriteResult(path, canonical.sha256(data), len(data), True), None, None)
			self.put([f"{PREFIX}/{path}"])
		frappe.db.commit()
		rows = content_files.claim(
			[frappe._dict(name=content_files.row_name(p)) for p in paths], now_datetime()
		)
		content_files.finish(
			rows, {row.path: (row.sha256, None) for row in rows}, now_datetime(), lambda *a: False
		)
		content_files.record_removal(folder, is_folder=True)
		frappe.db.commit()

		uploads.drain()
		self.assertEqual(len(self.keys(f"{PREFIX}/{folder}")), 8)  # nothing deleted
		self.assertEqual(len(content_files.pending_deletes()), 8)
		held = self.brake_report(brake.DRAIN)
		self.assertEqual({p.path for p in reports.report_problems(held)}, set(paths))
		self.assertTrue(self.told(held))

		brake.confirm(held)
		uploads.drain()
		self.assertEqual(self.keys(f"{PREFIX}/{folder}"), set())
		self.assertEqual(content_files.pending_deletes(), [])

	def test_uploads_go_past_more_held_deletes_than_a_pass_takes(self):
		"""Deletes held by the brake are older than any upload due after them: were they in the pass's
		query, a pass of PASS_LIMIT rows would hold only them, and no upload would ever go."""
		self.use(deletion_brake=2)
		paths = [f"units/brake-held-{self.tag}-{n}.json" for n in range(6)]
		for path in paths:
			data = canonical.dumps({"p": path})
			content_files.record_write(WriteResult(path, canonical.sha256(data), len(data), True), None, None)
		rows = content_files.claim(
			[frappe._dict(name=content_files.row_name(p)) for p in paths], now_datetime()
		)
		content_files.finish(
			rows, {row.path: (row.sha256, None) for row in rows}, now_datetime(), lambda *a: False
		)
		for path in paths:
			content_files.record_removal(path, is_folder=False)
		frappe.db.commit()
		new = f"units/brake-new-{self.tag}.json"
		content_files.record_write(self.store.write(new, canonical.dumps({"new": 1})), "Unit", "new")
		frappe.db.commit()

		with patch.object(uploads, "PASS_LIMIT", 4):
			uploads.drain()
		self.assertEqual(
			frappe.db.get_value("Content File", content_files.row_name(new), "sync_status"), "Synced"
		)
		self.assertIn(f"{PREFIX}/{new}", self.keys())
		self.assertEqual(sorted(content_files.pending_deletes()), sorted(paths))  # still held

	def test_changing_the_key_prefix_or_bucket_deletes_nothing(self):
		keys = [f"{PREFIX}/units/k{n}.json" for n in range(5)]
		self.put(keys)
		self.use(key_prefix="another")
		uploads.drain()
		other = f"memora-brake2-{self.tag.lower()}"
		self.s3.create_bucket(Bucket=other)
		use_endpoint(S3_ENDPOINT, other, key_prefix=PREFIX, deletion_brake=0)
		uploads.drain()
		self.assertEqual(self.keys(), set(keys))
