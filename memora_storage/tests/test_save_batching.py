"""The files of one transaction: each rendered once, written with one sync, recorded in one go.

A commit of many documents (an import commits once per Subject) renders every file once, each parent
once after all its children however many changed, and makes them durable with one syncfs instead of
two fsyncs per file.
"""

from collections import Counter
from unittest.mock import patch

import frappe

from memora_storage import content_files, delivery_hash, publishing
from memora_storage.tests.utils import ContentTestCase, set_cdn_settings
from memora_storage.utils import canonical
from memora_storage.utils import store as store_module

UNITS = 30


class TestSaveBatching(ContentTestCase):
	def import_tree(self) -> tuple[str, str, list[str]]:
		plan = self.make("Plan", f"plan-{self.tag}", commit=False).name
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan).name
		units = [
			self.make("Unit", f"unit-{self.tag}-{i:02}", commit=False, subject=subject, body=f"body {i}").name
			for i in range(UNITS)
		]
		return plan, subject, units

	def counted_commit(self) -> tuple[Counter, list[str]]:
		"""Commit, counting renders per document and filesystem syncs."""
		renders, syncs = Counter(), []
		render, sync = publishing.render, store_module._sync_filesystem

		def counting_render(doc, ctx):
			renders[(doc.doctype, doc.name)] += 1
			return render(doc, ctx)

		def counting_sync(folder):
			syncs.append(folder)
			return sync(folder)

		with (
			patch.object(publishing, "render", counting_render),
			patch.object(store_module, "_sync_filesystem", counting_sync),
		):
			frappe.db.commit()
		return renders, syncs

	def assert_recorded(self, paths: list[str]) -> None:
		for path in paths:
			row = frappe.db.get_value(
				"Content File", content_files.row_name(path), ["local_status", "sha256"], as_dict=True
			)
			self.assertEqual(row.local_status, "Written", path)
			self.assertEqual(row.sha256, canonical.sha256(self.store.read(path)), path)

	def test_an_import_transaction_renders_each_file_once_with_one_sync(self):
		plan, subject, units = self.import_tree()
		renders, syncs = self.counted_commit()
		expected = {("Plan", plan), ("Subject", subject), *(("Unit", unit) for unit in units)}
		self.assertEqual(set(renders), expected)
		self.assertEqual(set(renders.values()), {1})
		self.assertEqual(len(syncs), 1)  # the units; the subject and the manifest, alone, are fsynced
		subject_path = f"plans/{plan}/subjects/{subject}.json"
		listed = [entry["name"] for entry in self.read_json(subject_path)["units"]]
		self.assertEqual(listed, units)  # the subject was rendered after every unit was written
		self.assert_recorded([f"units/{unit}.json" for unit in units] + [subject_path])

	def test_edits_that_leave_the_cdn_render_their_parents_once(self):
		set_cdn_settings(enable_cdn=1, cdn_base_url="https://cdn.example.com/memora", bucket="memora-test")
		plan, subject, units = self.import_tree()
		frappe.db.commit()
		paths = [f"units/{unit}.json" for unit in units]
		paths += [f"plans/{plan}/subjects/{subject}.json", f"plans/{plan}/manifest.json"]
		# As if the drain had sent every file: Synced at its version, and on the CDN in the hash.
		for path in paths:
			sha = canonical.sha256(self.store.read(path))
			frappe.db.set_value(
				"Content File", content_files.row_name(path), {"sync_status": "Synced", "synced_sha256": sha}
			)
			delivery_hash.mark({path: delivery_hash.state(True, sha)})
		frappe.db.commit()

		for unit in units[:5]:
			doc = frappe.get_doc("Unit", unit)
			doc.body = "edited"
			doc.save()
		renders, _ = self.counted_commit()

		# Five units left the CDN: their subject follows them once, and the manifest follows the subject.
		expected = {("Subject", subject), ("Plan", plan), *(("Unit", unit) for unit in units[:5])}
		self.assertEqual(set(renders), expected)
		self.assertEqual(set(renders.values()), {1})
		listed = self.read_json(f"plans/{plan}/subjects/{subject}.json")["units"]
		local = {entry["name"] for entry in listed if not entry["url"].startswith("https://cdn.example.com")}
		self.assertEqual(local, set(units[:5]))
		self.assert_recorded(paths)

	def test_a_body_edit_renders_its_parent_only_when_the_listing_can_change(self):
		"""A Subject lists each Unit's name, title and URL: a body edit of a Unit whose link stays where
		it was leaves the Subject alone, however many Units it lists; a title edit renders it."""
		plan, subject, units = self.import_tree()
		frappe.db.commit()
		subject_path = f"plans/{plan}/subjects/{subject}.json"
		before = self.store.read(subject_path)

		doc = frappe.get_doc("Unit", units[3])
		doc.body = "a new body"
		doc.save()
		renders, _ = self.counted_commit()
		self.assertEqual(set(renders), {("Unit", units[3])})
		self.assertEqual(self.read_json(f"units/{units[3]}.json")["body"], "a new body")
		self.assertEqual(self.store.read(subject_path), before)
		self.assert_recorded([f"units/{units[3]}.json"])

		doc = frappe.get_doc("Unit", units[3])
		doc.title = "A new title"
		doc.save()
		renders, _ = self.counted_commit()
		self.assertEqual(set(renders), {("Unit", units[3]), ("Subject", subject)})
		listed = {entry["name"]: entry["title"] for entry in self.read_json(subject_path)["units"]}
		self.assertEqual(listed[units[3]], "A new title")

		doc = frappe.get_doc("Unit", units[4])  # a form sends every value back as text
		doc.update(frappe.parse_json(frappe.as_json(doc.as_dict())))
		doc.body = "edited in a form"
		doc.save()
		renders, _ = self.counted_commit()
		self.assertEqual(set(renders), {("Unit", units[4])})
