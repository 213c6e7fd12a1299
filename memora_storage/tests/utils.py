"""Shared set-up for the Frappe-layer tests: the content DocTypes, settings and cleanup."""

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from memora_storage import settings
from memora_storage.demo import ensure_content_doctypes

SETTINGS_DEFAULTS = {
	"enable_cdn": 0,
	"cdn_base_url": "",
	"local_fallback_mode": 0,
	"local_domain": "http://memora.local",
	"bucket": "",
	"min_free_disk_percent": 0,
	"regenerate_missing_files": 0,
	"health_check_start_hour": 8,
	"health_check_end_hour": 18,
}


def set_cdn_settings(**values) -> None:
	"""Save CDN Settings through the document (validation and hooks included) and commit."""
	doc = frappe.get_single("CDN Settings")
	doc.update({**SETTINGS_DEFAULTS, **values})
	doc.save(ignore_permissions=True)
	frappe.db.commit()


def ensure_outgoing_email_account() -> None:
	"""Alerts queue an email; the queue needs a default outgoing account (nothing is sent in tests)."""
	if frappe.db.exists("Email Account", {"default_outgoing": 1, "enable_outgoing": 1}):
		return
	frappe.get_doc(
		{
			"doctype": "Email Account",
			"email_account_name": "Memora Test Outgoing",
			"email_id": "memora-outgoing@example.com",
			"enable_outgoing": 1,
			"default_outgoing": 1,
			"smtp_server": "127.0.0.1",
			"smtp_port": 2525,
			"no_smtp_authentication": 1,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()


class ContentTestCase(FrappeTestCase):
	"""Creates content with unique names, commits so files are written, and deletes it afterwards."""

	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		ensure_content_doctypes()
		set_cdn_settings()
		cls.store = settings.content_store()

	def setUp(self) -> None:
		frappe.set_user("Administrator")
		self.created: list[tuple[str, str]] = []
		self.tag = frappe.generate_hash(length=6)

	def tearDown(self) -> None:
		frappe.db.rollback()
		frappe.set_user("Administrator")
		for doctype, name in reversed(self.created):
			if frappe.db.exists(doctype, name):
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.commit()
		set_cdn_settings()

	def make(self, doctype: str, name: str, commit: bool = True, **values):
		doc = frappe.get_doc({"doctype": doctype, "name": name, "title": name, **values}).insert()
		self.created.append((doctype, doc.name))
		if commit:
			frappe.db.commit()
		return doc

	def make_tree(self):
		"""One Plan with one Subject holding two Units, committed."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan.name)
		units = [
			self.make("Unit", f"unit-{self.tag}-{i}", commit=False, subject=subject.name, body=f"body {i}")
			for i in (1, 2)
		]
		frappe.db.commit()
		return plan, subject, units

	def read_json(self, path: str) -> dict:
		return json.loads(self.store.read(path))
