"""CDN sync on a real site against a real S3 endpoint: uploads, the retry schedule, alerts, verification.

The endpoint is a moto server on 127.0.0.1 whose URL `run-tests` passes in MEMORA_TEST_S3_ENDPOINT
(moto's Flask would not fit beside Frappe's pinned Werkzeug in the bench's environment).
"""

import datetime
import time
import unittest

import frappe
from frappe.desk.doctype.notification_settings.notification_settings import (
	create_notification_settings,
	toggle_notifications,
)
from frappe.utils import now_datetime
from frappe.utils.background_jobs import get_job

from memora_storage import api, content_files, jobs, settings, uploads, verification
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_KEYS,
	S3_SKIP_REASON,
	ContentTestCase,
	closed_port_url,
	ensure_outgoing_email_account,
	s3_client,
	start_worker,
	stop,
	use_endpoint,
)


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestCdnSync(ContentTestCase):
	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-{self.tag.lower()}"
		self.s3 = s3_client()
		self.s3.create_bucket(Bucket=self.bucket)
		self.use_endpoint(S3_ENDPOINT)
		frappe.db.delete("Content File")
		frappe.db.commit()

	def use_endpoint(self, endpoint: str, **values) -> None:
		use_endpoint(endpoint, self.bucket, key_prefix="content", **values)

	def object_bytes(self, path: str) -> bytes | None:
		try:
			return self.s3.get_object(Bucket=self.bucket, Key=f"content/{path}")["Body"].read()
		except self.s3.exceptions.NoSuchKey:
			return None

	def pending(self) -> list[str]:
		return frappe.get_all("Content File", filters={"sync_status": "Pending"}, pluck="name")

	def sync_all(self, now: datetime.datetime | None = None) -> dict[str, int]:
		return uploads.drain(now=now)

	def test_saved_content_reaches_the_bucket_byte_for_byte(self):
		_plan, _subject, units = self.make_tree()
		rows = frappe.get_all("Content File", fields=["path", "sync_status"])
		self.assertEqual({r.sync_status for r in rows}, {"Pending"})
		self.assertEqual(self.sync_all()["synced"], 4)
		for row in frappe.get_all("Content File", fields=["path", "sync_status", "synced_sha256", "sha256"]):
			self.assertEqual(row.sync_status, "Synced")
			self.assertEqual(row.synced_sha256, row.sha256)
			self.assertEqual(self.object_bytes(row.path), self.store.read(row.path))
		head = self.s3.head_object(Bucket=self.bucket, Key=f"content/units/{units[0].name}.json")
		self.assertTrue(head["ContentType"].startswith("application/json"))
		self.assertEqual(head["CacheControl"], settings.get_settings()["cache_control_listing"])
		self.assertEqual(self.sync_all()["synced"], 0)  # nothing changed, nothing sent

	def test_real_worker_uploads_after_commit(self):
		"""The after-commit job, run by a real RQ worker process of the bench."""
		worker = start_worker()
		try:
			_plan, _subject, units = self.make_tree()
			path = f"units/{units[0].name}.json"
			deadline = time.monotonic() + 60
			while time.monotonic() < deadline and self.object_bytes(path) != self.store.read(path):
				time.sleep(0.5)
			self.assertEqual(self.object_bytes(path), self.store.read(path))
			deadline = time.monotonic() + 30
			while time.monotonic() < deadline and self.pending():
				time.sleep(0.5)
				frappe.db.rollback()  # see the worker's commits
			self.assertEqual(self.pending(), [])
		finally:
			stop(worker)

	def test_outage_follows_the_schedule_then_fails_alerts_and_retry_recovers(self):
		ensure_outgoing_email_account()
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		self.use_endpoint(closed_port_url())
		name = content_files.row_name(path)

		now = now_datetime()
		first = now
		gaps = []
		for _ in range(20):
			uploads.drain(now=now)
			row = frappe.get_doc("Content File", name)
			if row.sync_status == "Failed":
				break
			self.assertEqual(row.sync_status, "Pending")
			self.assertIn("127.0.0.1", row.last_error)
			self.assertEqual(row.first_failure_at, first)
			gaps.append(round((row.next_attempt_at - now).total_seconds()))
			# Not due yet: a pass one second early sends nothing.
			self.assertEqual(
				uploads.drain(now=row.next_attempt_at - datetime.timedelta(seconds=1))["retry"],
				0,
			)
			now = row.next_attempt_at
		self.assertEqual(gaps, [30, 60, 120, 300, 900, 900, 900])
		self.assertEqual(row.sync_status, "Failed")
		self.assertEqual(row.attempts, 8)
		self.assertEqual(self.object_bytes(path), None)  # never half-written

		notifications_before = frappe.db.count("Notification Log", {"for_user": "Administrator"})
		emails_before = frappe.db.count("Email Queue")
		uploads.dispatch()
		self.assertEqual(
			frappe.db.count("Notification Log", {"for_user": "Administrator"}), notifications_before + 1
		)
		self.assertEqual(frappe.db.count("Email Queue"), emails_before + 1)
		email = frappe.get_last_doc("Email Queue")
		self.assertIn("could not reach the CDN", email.message)
		uploads.dispatch()  # no alert storm: each failure is announced once
		self.assertEqual(frappe.db.count("Email Queue"), emails_before + 1)

		self.use_endpoint(S3_ENDPOINT)
		# Every file of the tree went through the same schedule; one alert covered them all.
		self.assertEqual(api.retry_all_failed(), frappe.db.count("Content File"))
		uploads.drain()
		self.assertEqual(frappe.db.get_value("Content File", name, "sync_status"), "Synced")
		self.assertEqual(self.object_bytes(path), self.store.read(path))

	def test_cdn_off_rows_wait_then_resume(self):
		self.use_endpoint(S3_ENDPOINT, enable_cdn=0, cdn_base_url="")
		_plan, _subject, units = self.make_tree()
		self.assertEqual(self.sync_all()["synced"], 0)
		self.assertEqual(len(self.pending()), 4)
		self.use_endpoint(S3_ENDPOINT)
		self.assertEqual(self.sync_all()["synced"], 4)
		self.assertEqual(
			self.object_bytes(f"units/{units[1].name}.json"), self.store.read(f"units/{units[1].name}.json")
		)

	def test_delete_reaches_the_cdn_and_newer_save_wins(self):
		_plan, subject, units = self.make_tree()
		self.sync_all()
		path = f"units/{units[1].name}.json"
		frappe.delete_doc("Unit", units[1].name)
		frappe.db.commit()
		self.assertEqual(
			frappe.db.get_value("Content File", content_files.row_name(path), "sync_operation"), "Delete"
		)
		self.sync_all()
		self.assertIsNone(self.object_bytes(path))
		self.assertFalse(frappe.db.exists("Content File", content_files.row_name(path)))
		subject_path = f"plans/{subject.plan}/subjects/{subject.name}.json"
		self.assertEqual(self.object_bytes(subject_path), self.store.read(subject_path))

	def test_verification_finds_exactly_the_differences_and_resync_repairs(self):
		_plan, _subject, units = self.make_tree()
		self.sync_all()
		# Other content of the site (the demo, say) has no rows here: a first resync sends it too.
		verification.resync(verification.verify())
		self.sync_all()
		self.assertEqual(verification.verify().status, "Healthy")
		missing, changed = f"units/{units[0].name}.json", f"units/{units[1].name}.json"
		self.s3.delete_object(Bucket=self.bucket, Key=f"content/{missing}")
		self.s3.put_object(Bucket=self.bucket, Key=f"content/{changed}", Body=b'{"tampered": true}\n')
		self.s3.put_object(Bucket=self.bucket, Key="content/units/stray.json", Body=b"{}")

		report = verification.verify()
		found = {(row.problem, row.path) for row in report.issues}
		self.assertEqual(
			found,
			{("Missing on CDN", missing), ("Mismatch on CDN", changed), ("Extra on CDN", "units/stray.json")},
		)
		self.assertEqual(
			(report.cdn_missing_count, report.cdn_mismatch_count, report.cdn_extra_count), (1, 1, 1)
		)
		self.assertEqual(report.status, "Problems Found")

		self.assertEqual(report.run_resync(), 2)  # the job behind the report's Resync, in this process
		self.assertEqual(self.told(report), "2 content files queued for the CDN.")
		self.sync_all()
		self.assertEqual(self.object_bytes(missing), self.store.read(missing))
		self.assertEqual(self.object_bytes(changed), self.store.read(changed))
		again = verification.verify()
		self.assertEqual({row.path for row in again.issues}, {"units/stray.json"})

	def test_verify_cdn_now_is_one_long_job_that_tells_the_user(self):
		job_id = jobs.job_id(jobs.VERIFY)
		self.addCleanup(_drop_job, job_id)
		_drop_job(job_id)
		self.assertTrue(api.verify_cdn())
		job = get_job(job_id)
		self.assertTrue(job.origin.endswith("long"), job.origin)
		self.assertEqual(job.kwargs["kwargs"], {"user": "Administrator"})
		self.assertFalse(api.verify_cdn())  # the nightly run shares the id: never two at once

		emails = frappe.db.count("Email Queue")
		report = verification.verify(user="Administrator")  # the job, in this process
		self.assertEqual(self.told(report), report.summary)
		self.assertEqual(frappe.db.count("Email Queue"), emails)  # the user is told; nobody is emailed

		self.addCleanup(_notifications, enable=True)
		_notifications(enable=False)  # Administrator's Notification Settings decide
		self.assertIsNone(self.told(verification.verify(user="Administrator")))

	def told(self, report) -> str | None:
		"""The subject of the Notification Log a job's end left for Administrator about the report."""
		return frappe.db.get_value(
			"Notification Log",
			{
				"for_user": "Administrator",
				"document_type": "Content Health Report",
				"document_name": report.name,
			},
			"subject",
		)

	def test_connection_probe(self):
		result = api.test_connection()
		self.assertTrue(result["ok"], result)
		self.assertGreaterEqual(len(result["steps"]), 3)
		self.use_endpoint(closed_port_url())
		result = api.test_connection()
		self.assertFalse(result["ok"])
		self.assertNotIn(S3_KEYS["secret_access_key"], frappe.as_json(result))


def _notifications(enable: bool) -> None:
	create_notification_settings("Administrator")
	toggle_notifications("Administrator", enable=enable)
	frappe.db.commit()


def _drop_job(job_id: str) -> None:
	if job := get_job(job_id):
		job.delete()
