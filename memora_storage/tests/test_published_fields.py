"""Published fields on a real site: a file carries the fields its content map names, and a change of what
would be published (Customize Form, a migrate, the map) re-renders every file.

The test Unit gets Custom Fields a guest must never read (hidden, permlevel 1, Password, a private
attachment, a table whose rows hide fields too) beside public ones; the files are read over HTTP as a
guest, from the Frappe dev server.
"""

import json
from dataclasses import replace
from unittest.mock import patch

import frappe
import requests
from frappe.custom.doctype.custom_field.custom_field import create_custom_fields

from memora_storage import content_map, jobs, meta_changes, publishing, settings
from memora_storage.tests.utils import ContentTestCase, dev_server_for, set_cdn_settings

STEP_DOCTYPE = "Memora Test Unit Step"
UNIT_FIELDS = [
	{"fieldname": "hint", "label": "Hint", "fieldtype": "Data"},
	{"fieldname": "answer_key", "label": "Answer Key", "fieldtype": "Data", "hidden": 1},
	{"fieldname": "teacher_notes", "label": "Teacher Notes", "fieldtype": "Small Text", "permlevel": 1},
	{"fieldname": "unit_password", "label": "Unit Password", "fieldtype": "Password"},
	{"fieldname": "worksheet", "label": "Worksheet", "fieldtype": "Attach"},
	{"fieldname": "handout", "label": "Handout", "fieldtype": "Attach"},
	{"fieldname": "steps", "label": "Steps", "fieldtype": "Table", "options": STEP_DOCTYPE},
]
STEP_FIELDS = [
	{"fieldname": "step", "label": "Step", "fieldtype": "Data", "in_list_view": 1},
	{"fieldname": "solution", "label": "Solution", "fieldtype": "Data", "hidden": 1},
	{"fieldname": "reviewer_note", "label": "Reviewer Note", "fieldtype": "Data", "permlevel": 1},
]


def add_test_fields() -> None:
	"""The Unit's secret and public Custom Fields and its steps table DocType, committed."""
	if not frappe.db.exists("DocType", STEP_DOCTYPE):
		frappe.get_doc(
			{
				"doctype": "DocType",
				"name": STEP_DOCTYPE,
				"module": "Memora Storage",
				"custom": 1,
				"istable": 1,
				"fields": STEP_FIELDS,
			}
		).insert(ignore_permissions=True)
	create_custom_fields({"Unit": [dict(df, insert_after="body") for df in UNIT_FIELDS]})
	frappe.db.commit()


def remove_test_fields() -> None:
	frappe.db.rollback()
	frappe.db.delete(
		"Property Setter", {"doc_type": "Unit", "field_name": ["in", [f["fieldname"] for f in UNIT_FIELDS]]}
	)
	for df in UNIT_FIELDS:
		frappe.delete_doc("Custom Field", f"Unit-{df['fieldname']}", force=True, ignore_missing=True)
	frappe.delete_doc("DocType", STEP_DOCTYPE, force=True, ignore_missing=True)
	frappe.clear_cache(doctype="Unit")
	frappe.db.commit()


def secret_values(tag: str) -> dict:
	"""Values of a Unit a guest must never read, each a unique string to search the served bytes for."""
	return {
		"answer_key": f"ANSWER-{tag}",
		"teacher_notes": f"TEACHER-NOTES-{tag}",
		"unit_password": f"PASSWORD-{tag}",
	}


def make_file(tag: str, name: str, is_private: int) -> "frappe.Document":
	return frappe.get_doc(
		{
			"doctype": "File",
			"file_name": f"{name}-{tag}.txt",
			"is_private": is_private,
			"content": f"{name} {tag}",
		}
	).insert(ignore_permissions=True)


class TestPublishedFields(ContentTestCase):
	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		add_test_fields()
		cls.addClassCleanup(remove_test_fields)
		cls.base = dev_server_for(cls)

	def setUp(self) -> None:
		super().setUp()
		set_cdn_settings(local_domain=self.base)

	def make_unit(self, **values) -> "frappe.Document":
		"""A committed Unit in a new tree, with a private and a public attachment, secrets and a step."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan.name)
		private, public = make_file(self.tag, "worksheet", 1), make_file(self.tag, "handout", 0)
		self.created += [("File", private.name), ("File", public.name)]
		return self.make(
			"Unit",
			f"unit-{self.tag}",
			subject=subject.name,
			body=f"BODY-{self.tag}",
			hint=f"HINT-{self.tag}",
			worksheet=private.file_url,
			handout=public.file_url,
			steps=[
				{
					"step": f"STEP-{self.tag}",
					"solution": f"SOLUTION-{self.tag}",
					"reviewer_note": f"REVIEWER-{self.tag}",
				}
			],
			**secret_values(self.tag),
			**values,
		)

	def served(self, path: str) -> bytes:
		"""A content file as a guest gets it: its URL from the API, then the bytes from that URL."""
		api = f"{self.base}/api/method/memora_storage.api.get_content_url"
		url = requests.get(api, params={"path": path}, timeout=10).json()["message"]
		response = requests.get(url, timeout=10)
		self.assertEqual(response.status_code, 200, url)
		return response.content

	def test_a_guest_reads_public_fields_only(self):
		unit = self.make_unit()
		data = self.served(f"units/{unit.name}.json")
		private_url = unit.worksheet
		for secret in (
			*secret_values(self.tag).values(),
			private_url,
			f"SOLUTION-{self.tag}",
			f"REVIEWER-{self.tag}",
		):
			self.assertNotIn(secret.encode(), data)
		self.assertNotIn(b"****", data)  # not even the masked length of the password
		published = json.loads(data)
		self.assertEqual(
			published,
			{
				"doctype": "Unit",
				"name": unit.name,
				"modified": str(unit.modified),
				"title": unit.name,
				"subject": unit.subject,
				"body": f"BODY-{self.tag}",
				"hint": f"HINT-{self.tag}",
				"worksheet": None,
				"handout": unit.handout,
				"steps": [{"step": f"STEP-{self.tag}"}],
			},
		)
		self.assertTrue(unit.handout.startswith("/files/"))
		subject_file = self.served(f"plans/plan-{self.tag}/subjects/{unit.subject}.json")
		self.assertNotIn(f"ANSWER-{self.tag}".encode(), subject_file)

	def test_hiding_a_field_in_customize_form_rebuilds_every_file(self):
		unit = self.make_unit()
		path = f"units/{unit.name}.json"
		self.assertIn(f"HINT-{self.tag}".encode(), self.served(path))
		jobs.started(jobs.REBUILD)
		# What Customize Form saves when "Hidden" is ticked on a standard field.
		frappe.make_property_setter(
			{
				"doctype": "Unit",
				"doctype_or_field": "DocField",
				"fieldname": "hint",
				"property": "hidden",
				"value": "1",
				"property_type": "Check",
			},
			is_system_generated=False,
		)
		self.addCleanup(self._unhide_hint)
		self.assertFalse(jobs.is_requested(jobs.REBUILD))  # not before the commit
		frappe.db.commit()
		self.assertTrue(jobs.is_requested(jobs.REBUILD))
		self.assertIn(f"HINT-{self.tag}".encode(), self.served(path))  # until the rebuild runs

		publishing.rebuild_all()
		data = self.served(path)
		self.assertNotIn(f"HINT-{self.tag}".encode(), data)
		self.assertNotIn("hint", json.loads(data))
		self.assertEqual(meta_changes.check(), [])  # nothing left to do

	def _unhide_hint(self) -> None:
		frappe.db.rollback()
		frappe.db.delete("Property Setter", {"doc_type": "Unit", "field_name": "hint"})
		frappe.clear_cache(doctype="Unit")
		meta_changes.refresh()
		frappe.db.commit()

	def test_a_field_shown_again_is_found_by_the_hourly_check(self):
		"""Customize Form drops a Property Setter with a plain delete, no document event, when a field
		goes back to its standard value: the hourly check sees the new field set."""
		frappe.make_property_setter(
			{
				"doctype": "Unit",
				"fieldname": "hint",
				"property": "hidden",
				"value": "1",
				"property_type": "Check",
			},
			is_system_generated=False,
		)
		frappe.db.commit()
		self.addCleanup(self._unhide_hint)
		jobs.started(jobs.REBUILD)
		frappe.db.delete("Property Setter", {"doc_type": "Unit", "field_name": "hint"})
		frappe.db.commit()
		self.assertFalse(jobs.is_requested(jobs.REBUILD))
		self.assertEqual(meta_changes.check(), ["Unit"])
		self.assertTrue(jobs.is_requested(jobs.REBUILD))

	def test_a_migrate_with_changed_fields_rebuilds_after_its_commit(self):
		frappe.db.set_global(meta_changes.SIGNATURES_KEY, json.dumps({"Unit": "before"}))
		jobs.started(jobs.REBUILD)
		meta_changes.after_migrate()
		self.assertFalse(jobs.is_requested(jobs.REBUILD))
		frappe.db.commit()
		self.assertTrue(jobs.is_requested(jobs.REBUILD))
		self.assertEqual(meta_changes.stored_signatures(), meta_changes.signatures())

	def test_meta_changes_of_other_doctypes_queue_nothing(self):
		jobs.started(jobs.REBUILD)
		frappe.make_property_setter(
			{
				"doctype": "ToDo",
				"fieldname": "description",
				"property": "bold",
				"value": "1",
				"property_type": "Check",
			},
			is_system_generated=False,
		)
		frappe.db.commit()
		frappe.delete_doc("Property Setter", "ToDo-description-bold")
		frappe.db.commit()
		self.assertFalse(jobs.is_requested(jobs.REBUILD))

	def test_a_map_naming_fields_publishes_exactly_those(self):
		"""An app's `memora_content_map` may name the fields, Frappe's own too; a Password never."""
		unit = self.make_unit()
		mapped = dict(content_map.get_content_map())
		mapped["Unit"] = replace(
			mapped["Unit"],
			fields=("title", "owner", "teacher_notes", "unit_password", "steps", "no_such_field"),
		)
		ctx = publishing.RenderContext(mapped, settings.url_settings())
		data = json.loads(publishing.render(frappe.get_doc("Unit", unit.name), ctx))
		self.assertEqual(
			data,
			{
				"doctype": "Unit",
				"name": unit.name,
				"modified": str(unit.modified),
				"title": unit.name,
				"owner": "Administrator",
				"teacher_notes": f"TEACHER-NOTES-{self.tag}",
				"steps": [{"step": f"STEP-{self.tag}"}],  # the rows follow the default rule
			},
		)
		before = meta_changes.signatures()
		with patch("memora_storage.meta_changes.get_content_map", return_value=mapped):
			after = meta_changes.signatures()
		self.assertNotEqual(before["Unit"], after["Unit"])
		self.assertEqual(before["Plan"], after["Plan"])
