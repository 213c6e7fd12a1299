"""The resolver API over real HTTP, as a frontend calls it, and the local URLs it returns.

A Frappe dev server (what `bench serve` runs) is started for the test site on a free port.
"""

import json

import frappe
import requests

from memora_storage.tests.utils import ContentTestCase, dev_server_for, set_cdn_settings

API = "/api/method/memora_storage.api"


class TestApiOverHttp(ContentTestCase):
	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		cls.base = dev_server_for(cls)

	def setUp(self) -> None:
		super().setUp()
		set_cdn_settings(local_domain=self.base)

	def test_guest_gets_url_and_the_url_serves_the_exact_bytes(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		response = requests.get(f"{self.base}{API}.get_content_url", params={"path": path}, timeout=10)
		self.assertEqual(response.status_code, 200, response.text)
		url = response.json()["message"]
		self.assertEqual(url, f"{self.base}/files/memora_content/{path}")
		served = requests.get(url, timeout=10)
		self.assertEqual(served.status_code, 200)
		self.assertEqual(served.content, self.store.read(path))

	def test_arabic_name_url_is_encoded_and_served(self):
		name = f"وحدة #1? {self.tag}"
		plan = self.make("Plan", f"plan-{self.tag}")
		subject = self.make("Subject", f"subject-{self.tag}", plan=plan.name)
		self.make("Unit", name, subject=subject.name, body="نص")
		path = f"units/{name}.json"
		url = requests.get(f"{self.base}{API}.get_content_url", params={"path": path}, timeout=10).json()[
			"message"
		]
		self.assertNotIn("#", url.split("/files/")[1])
		served = requests.get(url, timeout=10)
		self.assertEqual(served.status_code, 200)
		self.assertEqual(served.content, self.store.read(path))

	def test_cdn_switch_is_seen_by_the_next_request(self):
		path = "units/U1.json"
		set_cdn_settings(
			local_domain=self.base, enable_cdn=1, cdn_base_url="https://cdn.example.com", bucket="b"
		)
		url = requests.get(f"{self.base}{API}.get_content_url", params={"path": path}, timeout=10).json()
		self.assertEqual(url["message"], "https://cdn.example.com/units/U1.json")
		set_cdn_settings(
			local_domain=self.base,
			enable_cdn=1,
			cdn_base_url="https://cdn.example.com",
			bucket="b",
			local_fallback_mode=1,
		)
		url = requests.get(f"{self.base}{API}.get_content_url", params={"path": path}, timeout=10).json()
		self.assertEqual(url["message"], f"{self.base}/files/memora_content/units/U1.json")

	def test_bad_paths_get_a_clear_400(self):
		for bad in (
			"../../site_config.json",
			"/etc/passwd",
			"units/..",
			"a\\b.json",
			"",
			"units/x.json.prev",
		):
			with self.subTest(path=bad):
				response = requests.get(f"{self.base}{API}.get_content_url", params={"path": bad}, timeout=10)
				self.assertEqual(response.status_code, 400, response.text)
				self.assertIn("Invalid content path", response.text)

	def test_batch(self):
		paths = ["units/A.json", "plans/P/manifest.json"]
		response = requests.post(
			f"{self.base}{API}.get_content_urls", data={"paths": json.dumps(paths)}, timeout=10
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(
			response.json()["message"], {p: f"{self.base}/files/memora_content/{p}" for p in paths}
		)
		too_many = json.dumps([f"units/{i}.json" for i in range(1001)])
		response = requests.post(f"{self.base}{API}.get_content_urls", data={"paths": too_many}, timeout=10)
		self.assertEqual(response.status_code, 400)

	def test_guest_cannot_read_settings_or_roll_back(self):
		response = requests.get(f"{self.base}/api/resource/CDN Settings/CDN Settings", timeout=10)
		self.assertEqual(response.status_code, 403)
		response = requests.post(f"{self.base}{API}.rollback", data={"path": "units/A.json"}, timeout=10)
		self.assertEqual(response.status_code, 403)

	def test_admin_rollback_over_http(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		first = self.store.read(path)
		self.edit(units[0], body="second")
		session = requests.Session()
		login = session.post(f"{self.base}/api/method/login", data=_system_manager(), timeout=10)
		self.assertEqual(login.status_code, 200, login.text)
		response = session.post(f"{self.base}{API}.rollback", data={"path": path}, timeout=10)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(self.store.read(path), first)


def _system_manager() -> dict[str, str]:
	"""Login details of a System Manager with a known password (the site's admin password is not stored)."""
	from frappe.utils.password import update_password

	email, password = "memora-admin@example.com", frappe.generate_hash(length=16)
	if not frappe.db.exists("User", email):
		user = frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": "Memora", "send_welcome_email": 0}
		)
		user.insert(ignore_permissions=True)
		user.add_roles("System Manager")
	update_password(email, password)
	frappe.db.commit()
	return {"usr": email, "pwd": password}
