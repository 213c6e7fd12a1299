"""CDN Settings: validation, who may see them, and how fast every process follows a save (SC-002)."""

import subprocess
import sys
import textwrap
import time
import unittest

import frappe

from memora_storage import api, content_files, delivery_hash, jobs, relink, settings
from memora_storage.api import get_content_url
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_SKIP_REASON,
	ContentTestCase,
	s3_client,
	set_cdn_settings,
	use_endpoint,
)

CDN = "https://cdn.example.com/memora"


class TestCDNSettings(ContentTestCase):
	def test_enabling_cdn_needs_base_url_and_bucket(self):
		with self.assertRaisesRegex(frappe.ValidationError, "CDN Base URL"):
			set_cdn_settings(enable_cdn=1, bucket="b")
		frappe.db.rollback()
		with self.assertRaisesRegex(frappe.ValidationError, "Bucket"):
			set_cdn_settings(enable_cdn=1, cdn_base_url=CDN)
		frappe.db.rollback()

	def test_urls_must_be_absolute_http(self):
		for bad in ("cdn.example.com", "ftp://cdn.example.com", "javascript:alert(1)", "https://x/?a=1"):
			with self.subTest(url=bad), self.assertRaises(frappe.ValidationError):
				set_cdn_settings(cdn_base_url=bad)
			frappe.db.rollback()

	def test_resolver_follows_settings(self):
		path = "units/U1.json"
		self.assertEqual(get_content_url(path), "http://memora.local/files/memora_content/units/U1.json")
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN + "/", bucket="b")
		self.assertEqual(get_content_url(path), f"{CDN}/units/U1.json")
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b", local_fallback_mode=1)
		self.assertEqual(get_content_url(path), "http://memora.local/files/memora_content/units/U1.json")
		set_cdn_settings(local_domain="")
		self.assertEqual(
			get_content_url(path), frappe.utils.get_url() + "/files/memora_content/units/U1.json"
		)

	def test_second_process_sees_a_save_on_its_next_call(self):
		"""A separate OS process polls the resolver; it must report the new base right after our commit."""
		script = textwrap.dedent(
			f"""
			import sys, time, frappe
			frappe.init(site={frappe.local.site!r}, sites_path={frappe.local.sites_path!r})
			frappe.connect()
			from memora_storage.api import get_content_url
			print("ready", get_content_url("units/U1.json"), flush=True)
			deadline = time.monotonic() + 30
			while time.monotonic() < deadline:
				url = get_content_url("units/U1.json")
				if url.startswith({CDN!r}):
					print("seen", time.monotonic(), url, flush=True)
					break
			"""
		)
		child = subprocess.Popen(
			[sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=frappe.local.sites_path
		)
		try:
			self.assertTrue(child.stdout.readline().startswith("ready http://memora.local/"))
			set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b")
			committed = time.monotonic()
			line = child.stdout.readline().split()
			self.assertEqual(line[0], "seen")
			delay = float(line[1]) - committed
			self.assertLess(delay, 1.0)  # SC-002; in practice the next call, a few milliseconds
		finally:
			child.kill()
			child.wait()

	def test_flipping_the_base_relinks_written_files(self):
		plan, subject, _units = self.make_tree()
		path = f"plans/{plan.name}/manifest.json"
		subject_path = f"plans/{plan.name}/subjects/{subject.name}.json"
		local = self.read_json(path)["subjects"][0]["url"]
		self.assertTrue(local.startswith("http://memora.local/"))
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b")
		self.assertTrue(jobs.is_requested(jobs.RELINK))
		relink.relink()
		self.assertFalse(jobs.is_requested(jobs.RELINK))
		# The CDN holds no version of the subject yet, so the manifest keeps linking it here.
		self.assertEqual(self.read_json(path)["subjects"][0]["url"], local)
		self.assertEqual(get_content_url(subject_path), local)
		# Once it holds the subject's current version, the link and the API move there.
		name = content_files.row_name(subject_path)
		sha = frappe.db.get_value("Content File", name, "sha256")
		frappe.db.set_value("Content File", name, {"sync_status": "Synced", "synced_sha256": sha})
		frappe.db.commit()
		self.assertEqual(delivery_hash.promote({subject_path: sha}), 1)
		self.assertEqual(get_content_url(subject_path), f"{CDN}/{subject_path}")
		relink.relink()
		self.assertEqual(self.read_json(path)["subjects"][0]["url"], f"{CDN}/{subject_path}")

	def test_only_system_manager_reads_settings_and_secret_never_leaves(self):
		doc = frappe.get_single("CDN Settings")
		doc.secret_access_key = "very-secret-key"
		doc.save(ignore_permissions=True)
		frappe.db.commit()
		self.assertNotIn("very-secret-key", frappe.as_json(frappe.get_single("CDN Settings").as_dict()))
		self.assertNotIn("very-secret-key", frappe.as_json(settings.get_settings()))
		self.assertEqual(
			frappe.get_single("CDN Settings").get_password("secret_access_key"), "very-secret-key"
		)

		user = _plain_user()
		frappe.set_user(user)
		self.assertFalse(frappe.has_permission("CDN Settings", "read"))
		with self.assertRaises(frappe.PermissionError):
			frappe.get_doc("CDN Settings").check_permission("read")
		frappe.set_user("Guest")
		self.assertFalse(frappe.has_permission("CDN Settings", "read"))

	def test_a_relink_whose_settings_were_replaced_stops_and_asks_for_the_next(self):
		"""Quick flips: the relink for an older save does not run to the end before the one for the last."""
		import dataclasses
		from unittest.mock import patch

		_plan, _subject, _units = self.make_tree()
		current = settings.url_settings()
		older = dataclasses.replace(current, local_domain="http://older.example")
		jobs.started(jobs.RELINK)
		with patch.object(relink.settings, "url_settings", side_effect=[older, current, current]):
			counts = relink.relink()
		self.assertEqual((counts["rewritten"], counts["failed"]), (0, 0))
		self.assertTrue(jobs.is_requested(jobs.RELINK))


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestCorsRule(ContentTestCase):
	def test_bad_origins_are_refused_and_good_ones_reach_the_bucket(self):
		bucket = f"memora-cors-{self.tag.lower()}"
		s3_client().create_bucket(Bucket=bucket)
		for bad in ("app.example.com", "https://app.example.com/path", "ftp://x.example"):
			with self.subTest(origin=bad), self.assertRaisesRegex(frappe.ValidationError, "not an origin"):
				use_endpoint(S3_ENDPOINT, bucket, cors_allowed_origins=f"https://ok.example\n{bad}")
			frappe.db.rollback()
		use_endpoint(
			S3_ENDPOINT, bucket, cors_allowed_origins="https://app.example.com\nhttps://*.learn.example"
		)
		message = frappe.get_single("CDN Settings").apply_cors_rule()
		self.assertIn("https://app.example.com, https://*.learn.example", message)
		rules = s3_client().get_bucket_cors(Bucket=bucket)["CORSRules"]
		self.assertEqual(rules[0]["AllowedOrigins"], ["https://app.example.com", "https://*.learn.example"])
		steps = {step["name"]: step for step in api.test_connection()["steps"]}
		self.assertTrue(steps["cors"]["ok"])


def _plain_user() -> str:
	email = "memora-plain-user@example.com"
	if not frappe.db.exists("User", email):
		frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": "Plain", "send_welcome_email": 0}
		).insert(ignore_permissions=True)
		frappe.db.commit()
	return email
