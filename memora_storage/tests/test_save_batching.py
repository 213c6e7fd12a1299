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

	def synced_tree(self) -> tuple[str, str, list[str], list[str]]:
		"""A tree as drains leave it: each file Synced at its version and on the CDN in the hash, and
		each parent rendered after its children landed, so it links to them there."""
		set_cdn_settings(enable_cdn=1, cdn_base_url="https://cdn.example.com/memora", bucket="memora-test")
		plan, subject, units = self.import_tree()
		frappe.db.commit()
		subject_path, manifest = f"plans/{plan}/subjects/{subject}.json", f"plans/{plan}/manifest.json"
		levels = [[f"units/{unit}.json" for unit in units], [subject_path], [manifest]]
		for level in levels:
			publishing.write_parents(level)  # as the drain does for the level below
			frappe.db.commit()
			for path in level:
				sha = canonical.sha256(self.store.read(path))
				frappe.db.set_value(
					"Content File",
					content_files.row_name(path),
					{"sync_status": "Synced", "synced_sha256": sha},
				)
				delivery_hash.mark({path: delivery_hash.state(True, sha)})
			frappe.db.commit()
		listed = self.read_json(subject_path)["units"]
		self.assertTrue(all(entry["url"].startswith("https://cdn.example.com") for entry in listed))
		return plan, subject, units, [path for level in levels for path in level]

	def assert_as_rendered(self, plan: str, subject: str) -> None:
		ctx = publishing.new_context()
		for doctype, name, path in (
			("Subject", subject, f"plans/{plan}/subjects/{subject}.json"),
			("Plan", plan, f"plans/{plan}/manifest.json"),
		):
			self.assertEqual(
				self.store.read(path), publishing.render(frappe.get_doc(doctype, name), ctx), path
			)

	def test_edits_that_leave_the_cdn_move_their_parents_links_without_a_render(self):
		plan, subject, units, paths = self.synced_tree()
		for unit in units[:5]:
			doc = frappe.get_doc("Unit", unit)
			doc.body = "edited"
			doc.save()
		renders, syncs = self.counted_commit()

		# Five units left the CDN: their subject's links to them move here, and the manifest's link
		# to the subject follows; both files are what a render gives, and neither was rendered.
		self.assertEqual(set(renders), {("Unit", unit) for unit in units[:5]})
		self.assertEqual(len(syncs), 1)
		listed = self.read_json(f"plans/{plan}/subjects/{subject}.json")["units"]
		local = {entry["name"] for entry in listed if not entry["url"].startswith("https://cdn.example.com")}
		self.assertEqual(local, set(units[:5]))
		manifest = self.read_json(f"plans/{plan}/manifest.json")
		self.assertFalse(manifest["subjects"][0]["url"].startswith("https://cdn.example.com"))
		self.assert_as_rendered(plan, subject)
		self.assert_recorded(paths)

	def test_a_parent_not_the_cdns_version_is_rendered(self):
		"""Only the file the CDN holds is the last render; any other is rendered again to follow."""
		plan, subject, units, _ = self.synced_tree()
		subject_path = f"plans/{plan}/subjects/{subject}.json"
		# The CDN holds another version of the subject than the one on disk.
		delivery_hash.mark({subject_path: delivery_hash.state(True, "0" * 64)})
		frappe.db.commit()
		doc = frappe.get_doc("Unit", units[0])
		doc.body = "edited"
		doc.save()
		renders, _ = self.counted_commit()
		self.assertEqual(set(renders), {("Unit", units[0]), ("Subject", subject)})
		listed = {entry["name"]: entry["url"] for entry in self.read_json(subject_path)["units"]}
		self.assertFalse(listed[units[0]].startswith("https://cdn.example.com"))
		self.assert_as_rendered(plan, subject)

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
