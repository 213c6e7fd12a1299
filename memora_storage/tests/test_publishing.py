"""The publishing pipeline as a student meets it: every link answers with the right bytes at every moment.

Content is saved through documents; the CDN is a real moto bucket whose public URL is the CDN Base
URL, reached through a fault proxy where faults matter; local URLs are served by nginx with bench's
static-file rule (memora_storage/tests/nginx.py), or by the dev server where nginx is missing.
A walk starts from the URL the API gives for a manifest and follows every link in every file,
asserting each GET answers 200 with the local file's exact bytes.
"""

import time
import unittest

import frappe

from memora_storage import api, content_files, delivery_hash, jobs, reports, settings, uploads, verification
from memora_storage.tests.student import PREFIX, PublishingTestCase, public_bucket
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_SKIP_REASON,
	ContentTestCase,
	fault_proxy,
	s3_client,
	set_cdn_settings,
	start_dev_server,
	start_worker,
	stop,
	use_endpoint,
)


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestPublishing(PublishingTestCase):
	def test_student_walk_right_after_saves_then_through_the_cdn(self):
		plan, subjects, units = self.tree()
		# Right after the burst of saves, before any drain: everything is local, and all of it answers.
		seen = self.walk(plan)
		self.assertEqual(len(seen), 1 + len(subjects) + len(units))
		self.assertEqual(set(seen.values()), {"local"})
		counts = self.drain()
		self.assertEqual(counts["synced"], len(seen))
		self.assertEqual(counts["claimed"], len(seen))  # one PUT each: parents waited for their children
		# Drained: the API and every link name the CDN, in FR-007's exact form, and it serves each version.
		seen = self.walk(plan)
		self.assertEqual(set(seen.values()), {"cdn"})
		self.assertEqual(
			api.get_content_url(f"units/{units[1]}.json"), f"{self.cdn_base}/units/{units[1]}.json"
		)
		# An edit: the unit, its subject and the manifest that lists the subject move back here at once.
		doc = frappe.get_doc("Unit", units[0])
		self.edit(doc, body="edited")
		seen = self.walk(plan)
		subject_path = f"plans/{plan}/subjects/{subjects[0]}.json"
		for path in (f"units/{units[0]}.json", subject_path, f"plans/{plan}/manifest.json"):
			self.assertEqual(seen[path], "local", path)
		self.assertEqual(seen[f"units/{units[1]}.json"], "cdn")
		self.assertEqual(seen[f"plans/{plan}/subjects/{subjects[1]}.json"], "cdn")
		self.drain()
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})

	def test_children_reach_the_cdn_before_the_files_listing_them(self):
		plan, subjects, units = self.tree()
		order = []
		original = uploads.Uploader.upload_many

		def recording(uploader, paths, *args, **kwargs):
			paths = list(paths)
			order.append(paths)
			return original(uploader, paths, *args, **kwargs)

		uploads.Uploader.upload_many = recording
		try:
			self.drain()
		finally:
			uploads.Uploader.upload_many = original
		passes = {path: n for n, paths in enumerate(order) for path in paths}
		for unit in units:
			subject = frappe.db.get_value("Unit", unit, "subject")
			self.assertLess(passes[f"units/{unit}.json"], passes[f"plans/{plan}/subjects/{subject}.json"])
		for subject in subjects:
			self.assertLess(
				passes[f"plans/{plan}/subjects/{subject}.json"], passes[f"plans/{plan}/manifest.json"]
			)
		self.assertEqual(sum(len(paths) for paths in order), 1 + len(subjects) + len(units))

	def test_a_delete_reaches_the_cdn_after_the_parent_stops_listing_it(self):
		plan, _subjects, units = self.tree(subjects=1, units=2)
		self.drain()
		unit_path = f"units/{units[1]}.json"
		frappe.delete_doc("Unit", units[1])
		frappe.db.commit()
		self.proxy.set_fault(503)  # the subject's new version cannot reach the CDN yet
		self.drain()
		self.proxy.clear()
		s3 = s3_client()
		# The CDN's subject still lists the unit, so the unit's object is still there and answers.
		self.assertEqual(
			s3.head_object(Bucket=self.bucket, Key=f"{PREFIX}/{unit_path}")["ContentLength"] > 0, True
		)
		self.assertEqual(set(self.walk(plan).values()) - {"cdn", "local"}, set())
		row = frappe.db.get_value(
			"Content File", content_files.row_name(unit_path), ["sync_status", "attempts"], as_dict=True
		)
		self.assertEqual((row.sync_status, row.attempts), ("Pending", 0))  # waiting, never tried
		frappe.db.set_value(
			"Content File", {"sync_status": "Pending"}, "next_attempt_at", frappe.utils.now_datetime()
		)
		frappe.db.commit()
		self.drain()
		with self.assertRaises(s3.exceptions.ClientError):
			s3.head_object(Bucket=self.bucket, Key=f"{PREFIX}/{unit_path}")
		self.assertFalse(frappe.db.exists("Content File", content_files.row_name(unit_path)))
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})

	def test_new_and_edited_content_is_reachable_at_once_while_the_endpoint_is_down(self):
		plan, subjects, units = self.tree(subjects=1, units=2)
		self.drain()
		self.proxy.stop()  # connections refused, nobody touches the settings
		doc = frappe.get_doc("Unit", units[0])
		self.edit(doc, body="edited during the outage")
		new = self.make("Unit", f"new-{self.tag}", subject=subjects[0], body="new during the outage").name
		subject_file = frappe.parse_json(
			self.store.read(f"plans/{plan}/subjects/{subjects[0]}.json").decode()
		)
		links = {link["name"]: link["url"] for link in subject_file["units"]}
		for name in (units[0], new):
			for url in (api.get_content_url(f"units/{name}.json"), links[name]):
				self.assertEqual(self.fetch(url)[0], "local", url)
		outcome = self.drain()
		self.assertGreater(outcome["retry"], 0)
		self.assertEqual(self.fetch(api.get_content_url(f"units/{new}.json"))[0], "local")

	def test_student_walk_never_fails_while_a_slow_endpoint_drains(self):
		plan, _subjects, _units = self.tree(subjects=2, units=4)
		self.proxy.delay = 1.0
		self.proxy.set_fault("slow-put")
		worker = start_worker()
		try:
			jobs.request_drain()
			walks, deadline = 0, time.monotonic() + 120
			while time.monotonic() < deadline:
				frappe.db.rollback()  # see the worker's commits
				seen = self.walk(plan)
				walks += 1
				if set(seen.values()) == {"cdn"}:
					break
				time.sleep(0.2)
			self.assertEqual(set(seen.values()), {"cdn"})
			self.assertGreater(walks, 3)  # walked while PUTs were held, every time with the right bytes
		finally:
			stop(worker)

	def test_a_bulk_import_beside_a_draining_worker_ends_all_synced(self):
		"""Saves and the drain touch the same rows at once: no deadlock, nothing left Syncing or stale."""
		plan = self.make("Plan", f"plan-{self.tag}").name
		subjects = [self.make("Subject", f"subject-{self.tag}-{s}", plan=plan).name for s in range(4)]
		since = frappe.utils.now_datetime()
		worker = start_worker()
		try:
			for batch in range(10):
				for n in range(20):
					name = f"unit-{self.tag}-{batch}-{n}"
					self.make("Unit", name, commit=False, subject=subjects[n % 4], body=f"b {name}")
				frappe.db.commit()
			self.wait_quiet()
		finally:
			stop(worker)
		rows = frappe.get_all("Content File", fields=["path", "sync_status", "sha256", "synced_sha256"])
		self.assertEqual(len(rows), 1 + 4 + 200)
		for row in rows:
			self.assertEqual((row.sync_status, row.synced_sha256), ("Synced", row.sha256), row.path)
		self.assertFalse(
			frappe.get_all("Error Log", filters={"creation": [">=", since], "error": ["like", "%eadlock%"]})
		)
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})

	def test_a_row_whose_recorded_version_is_stale_is_repaired_not_sent_forever(self):
		"""A file written whose record was lost (or two renders recorded out of order): one PUT, then Synced."""
		_plan, _subjects, units = self.tree(subjects=1, units=1)
		self.drain()
		path = f"units/{units[0]}.json"
		name = content_files.row_name(path)
		recorded = frappe.db.get_value("Content File", name, "sha256")
		delivery_hash.mark_local(path, recorded)
		self.store.write(path, self.store.read(path).replace(b'"body"', b'"body_"'))  # no record follows
		frappe.db.set_value("Content File", name, content_files._queued("Upload", None))
		frappe.db.commit()
		before = self.proxy.forwarded["PUT"]
		self.assertEqual(self.drain()["synced"], 1)
		self.assertEqual(self.drain()["claimed"], 0)
		self.assertEqual(self.proxy.forwarded["PUT"] - before, 1)
		row = frappe.db.get_value(
			"Content File", name, ["sync_status", "sha256", "synced_sha256"], as_dict=True
		)
		self.assertEqual(
			(row.sync_status, row.sha256, row.synced_sha256), ("Synced", row.synced_sha256, row.sha256)
		)
		self.assertNotEqual(row.sha256, recorded)
		self.assertEqual(self.fetch(api.get_content_url(path))[0], "cdn")

	def test_quick_flips_converge_on_the_last_settings(self):
		plan, _subjects, _units = self.tree(subjects=2, units=3)
		self.drain()
		worker = start_worker()
		try:
			for fallback in (1, 0, 1, 0, 1):  # within about a second, with a relink running meanwhile
				self.use(self.proxy.url, local_fallback_mode=fallback)
			self.wait_quiet()
			seen = self.walk(plan)
			self.assertEqual(set(seen.values()), {"local"})
			self.assert_links_follow(local=True)
			self.use(self.proxy.url, local_fallback_mode=0)
			self.use(self.proxy.url, local_fallback_mode=1)
			self.use(self.proxy.url, local_fallback_mode=0)
			self.wait_quiet()
			self.assertEqual(set(self.walk(plan).values()), {"cdn"})
			self.assert_links_follow(local=False)
		finally:
			stop(worker)

	def test_versioned_urls_name_each_version_and_leaves_are_cached_long(self):
		plan, subjects, units = self.tree(subjects=1, units=2)
		self.use(self.proxy.url, version_in_urls=1, cache_control_listing="public, max-age=60")
		self.drain()
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})
		unit_path = f"units/{units[1]}.json"
		sha = frappe.db.get_value("Content File", content_files.row_name(unit_path), "sha256")
		self.assertEqual(api.get_content_url(unit_path), f"{self.cdn_base}/{unit_path}?v={sha[:12]}")
		subject_path = f"plans/{plan}/subjects/{subjects[0]}.json"
		links = {link["name"]: link["url"] for link in self.read_json(subject_path)["units"]}
		self.assertEqual(links[units[1]], f"{self.cdn_base}/{unit_path}?v={sha[:12]}")
		s3 = s3_client()
		head = s3.head_object(Bucket=self.bucket, Key=f"{PREFIX}/{unit_path}")
		self.assertEqual(head["CacheControl"], "public, max-age=31536000, immutable")
		head = s3.head_object(Bucket=self.bucket, Key=f"{PREFIX}/{subject_path}")
		self.assertEqual(head["CacheControl"], "public, max-age=60")
		# An edit: a new version, a new URL, in the API and in the subject once it lands.
		self.edit(frappe.get_doc("Unit", units[1]), body="edited")
		self.drain()
		new_sha = frappe.db.get_value("Content File", content_files.row_name(unit_path), "sha256")
		self.assertNotEqual(new_sha, sha)
		self.assertEqual(api.get_content_url(unit_path), f"{self.cdn_base}/{unit_path}?v={new_sha[:12]}")
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})

	def test_jinja_helper_serves_a_busy_page_without_429(self):
		"""2,000 resolver calls in one request, 15 views from one IP: the Jinja helper is never rate-limited."""
		route = f"memora-urls-{self.tag}"
		page = frappe.get_doc(
			{
				"doctype": "Web Page",
				"title": route,
				"route": route,
				"published": 1,
				"dynamic_template": 1,
				"content_type": "HTML",
				"main_section_html": '{% for i in range(2000) %}<a href="{{ get_content_url("units/U" ~ i ~ ".json") }}">u</a>{% endfor %}',
			}
		).insert()
		self.created.append(("Web Page", page.name))
		frappe.db.commit()
		server, base = start_dev_server()  # pages are Frappe's to render, not nginx's
		self.addCleanup(stop, server)
		for view in range(15):
			response = self.http.get(f"{base}/{route}", timeout=60)
			self.assertEqual(response.status_code, 200, f"view {view + 1}: {response.text[:300]}")
			self.assertEqual(response.text.count(f"{self.cdn_base}/units/U"), 2000)
		settings.get_settings()  # the site still answers normally


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestStoresWithoutMd5Etags(ContentTestCase):
	def test_a_kms_bucket_is_detected_and_nothing_we_stored_is_deleted(self):
		bucket = f"memora-kms-{self.tag.lower()}"
		s3 = s3_client()
		public_bucket(bucket)
		proxy = fault_proxy(S3_ENDPOINT)
		try:
			proxy.set_fault("kms-etag")  # as SSE-KMS answers: the ETag is not the MD5 of the bytes
			use_endpoint(proxy.url, bucket, key_prefix=PREFIX, etag_behaviour="")
			frappe.db.delete("Content File")
			frappe.db.commit()
			_plan, _subject, _units = self.make_tree()
			counts = uploads.drain()
			self.assertEqual((counts["synced"], counts["retry"]), (4, 0))
			self.assertEqual(frappe.db.get_single_value("CDN Settings", "etag_behaviour"), "Not the MD5")
			for row in frappe.get_all(
				"Content File", fields=["path", "sync_status", "sha256", "synced_sha256"]
			):
				self.assertEqual((row.sync_status, row.synced_sha256), ("Synced", row.sha256), row.path)
				body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/{row.path}")["Body"].read()
				self.assertEqual(body, self.store.read(row.path), row.path)
			# The bucket holds this test's files only; the site's others are not on it (shared test site).
			report = verification.verify()
			mine = [p for p in reports.report_problems(report) if self.tag in p.path]
			self.assertEqual(mine, [], report.summary)
			self.assertEqual(report.cdn_mismatch_count, 0)
			self.assertEqual(report.cdn_extra_count, 0)
		finally:
			proxy.stop()
			set_cdn_settings()
