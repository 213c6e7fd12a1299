"""Doc events on a real site: saves write files after commit, deletes remove them, failures lose nothing."""

import dataclasses
import os
import stat
from unittest.mock import patch

import frappe

from memora_storage import content_files, content_map, publishing
from memora_storage.tests.utils import ContentTestCase, set_cdn_settings
from memora_storage.utils.paths import content_root, file_path, prev_path


class TestContentFlow(ContentTestCase):
	def test_save_writes_files_with_links_after_commit(self):
		plan, subject, units = self.make_tree()
		manifest = self.read_json(f"plans/{plan.name}/manifest.json")
		self.assertEqual(manifest["name"], plan.name)
		self.assertEqual(
			manifest["subjects"],
			[
				{
					"name": subject.name,
					"title": subject.title,
					"url": f"http://memora.local/files/memora_content/plans/{plan.name}/subjects/{subject.name}.json",
				}
			],
		)
		subject_file = self.read_json(f"plans/{plan.name}/subjects/{subject.name}.json")
		self.assertEqual([u["name"] for u in subject_file["units"]], [u.name for u in units])
		self.assertTrue(subject_file["units"][0]["url"].endswith(f"/units/{units[0].name}.json"))
		unit_file = self.read_json(f"units/{units[0].name}.json")
		self.assertEqual(unit_file["body"], "body 1")
		self.assertEqual(unit_file["subject"], subject.name)

		row = frappe.get_doc("Content File", content_files.row_name(f"units/{units[0].name}.json"))
		self.assertEqual((row.local_status, row.reference_name), ("Written", units[0].name))
		self.assertEqual(row.size, len(self.store.read(row.path)))
		self.assertEqual((row.sync_operation, row.sync_status), ("Upload", "Pending"))

	def test_nothing_written_before_commit_and_rollback_writes_nothing(self):
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		path = f"plans/{plan.name}/manifest.json"
		self.assertFalse(self.store.exists(path))
		frappe.db.rollback()
		self.assertFalse(self.store.exists(path))

	def test_update_keeps_previous_version(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		before = self.store.read(path)
		self.edit(units[0], body="changed")
		self.assertEqual(self.read_json(path)["body"], "changed")
		self.assertEqual(prev_path(self.store.private_root, path).read_bytes(), before)

	def test_delete_removes_file_and_prev_and_rerenders_parent(self):
		plan, subject, units = self.make_tree()
		path = f"units/{units[1].name}.json"
		self.edit(units[1], body="second version")
		self.assertTrue(prev_path(self.store.private_root, path).exists())

		frappe.delete_doc("Unit", units[1].name)
		frappe.db.commit()
		self.assertFalse(self.store.exists(path))
		self.assertFalse(prev_path(self.store.private_root, path).exists())
		listed = self.read_json(f"plans/{plan.name}/subjects/{subject.name}.json")["units"]
		self.assertEqual([u["name"] for u in listed], [units[0].name])
		row = frappe.get_doc("Content File", content_files.row_name(path))
		self.assertEqual(
			(row.local_status, row.sync_operation, row.sync_status), ("Deleted", "Delete", "Pending")
		)

	def test_delete_rolled_back_leaves_files(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		frappe.delete_doc("Unit", units[0].name)
		frappe.db.rollback()
		self.assertTrue(self.store.exists(path))

	def test_delete_blocked_by_link_check_leaves_files(self):
		plan, _subject, _units = self.make_tree()
		with self.assertRaises(frappe.LinkExistsError):
			frappe.delete_doc("Plan", plan.name)
		frappe.db.rollback()
		self.assertTrue(self.store.exists(f"plans/{plan.name}/manifest.json"))

	def test_deleting_plan_removes_its_folder(self):
		plan, subject, units = self.make_tree()
		folder = file_path(self.store.root, f"plans/{plan.name}")
		self.assertTrue(folder.is_dir())
		for unit in units:
			frappe.delete_doc("Unit", unit.name)
		frappe.delete_doc("Subject", subject.name)
		frappe.delete_doc("Plan", plan.name)
		frappe.db.commit()
		self.assertFalse(folder.exists())
		self.assertFalse(self.store.exists(f"units/{units[0].name}.json"))

	def test_subject_moved_to_another_plan(self):
		plan, subject, _units = self.make_tree()
		other = self.make("Plan", f"other-{self.tag}")
		self.edit(subject, plan=other.name)
		self.assertFalse(self.store.exists(f"plans/{plan.name}/subjects/{subject.name}.json"))
		self.assertTrue(self.store.exists(f"plans/{other.name}/subjects/{subject.name}.json"))
		self.assertEqual(self.read_json(f"plans/{plan.name}/manifest.json")["subjects"], [])
		self.assertEqual(
			[s["name"] for s in self.read_json(f"plans/{other.name}/manifest.json")["subjects"]],
			[subject.name],
		)

	def test_rename_moves_files(self):
		plan, subject, _units = self.make_tree()
		new_name = f"renamed-{self.tag}"
		frappe.rename_doc("Plan", plan.name, new_name)
		self.created.append(("Plan", new_name))
		frappe.db.commit()
		self.assertFalse(file_path(self.store.root, f"plans/{plan.name}").exists())
		self.assertEqual(self.read_json(f"plans/{new_name}/manifest.json")["name"], new_name)
		self.assertTrue(self.store.exists(f"plans/{new_name}/subjects/{subject.name}.json"))

	def test_arabic_and_unusual_names(self):
		name = f"خطة الرياضيات #1? {self.tag}"
		plan = self.make("Plan", name)
		data = self.store.read(f"plans/{name}/manifest.json")
		self.assertIn(name.encode("utf-8"), data)  # written as UTF-8, no \u escapes
		self.assertEqual(self.read_json(f"plans/{name}/manifest.json")["name"], plan.name)

	def test_names_that_would_escape_the_root_are_refused(self):
		for name in ("../escape", "a/b", "back\\slash", "..", "nul\0byte", ".hidden"):
			with self.subTest(name=name):
				with self.assertRaises(frappe.ValidationError) as caught:
					frappe.get_doc({"doctype": "Plan", "name": name, "title": "x"}).insert()
				self.assertIn("cannot be stored as a content file", str(caught.exception))
				frappe.db.rollback()
		self.assertFalse(os.path.exists(os.path.join(content_root(frappe.get_site_path()), "..", "escape")))

	def test_permission_denied_marks_pending_and_retry_recovers(self):
		if os.geteuid() == 0:
			self.skipTest(
				"running as root: file permissions do not stop root, so 'permission denied' cannot occur"
			)
		_plan, _subject, units = self.make_tree()
		units_dir = file_path(self.store.root, f"units/{units[0].name}.json").parent
		path = f"units/{units[0].name}.json"
		before = self.store.read(path)
		mode = units_dir.stat().st_mode
		os.chmod(units_dir, stat.S_IRUSR | stat.S_IXUSR)
		try:
			self.edit(units[0], body="written while read-only")  # the save itself succeeds
			self.assertEqual(self.store.read(path), before)
			row = frappe.get_doc("Content File", content_files.row_name(path))
			self.assertEqual(row.local_status, "Pending")
			self.assertIn("permission denied", row.local_error)
			self.assertTrue(
				frappe.db.exists(
					"Error Log", {"reference_name": units[0].name, "method": ["like", "%could not write%"]}
				)
			)
		finally:
			os.chmod(units_dir, mode)
		self.assertGreaterEqual(publishing.retry_pending_writes(), 1)
		self.assertEqual(self.read_json(path)["body"], "written while read-only")
		self.assertEqual(
			frappe.db.get_value("Content File", content_files.row_name(path), "local_status"), "Written"
		)

	def test_low_disk_pauses_writes_and_resumes(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		before = self.store.read(path)
		set_cdn_settings(min_free_disk_percent=99.99)  # the real free space is below this on any disk here
		self.edit(units[0], body="saved while the disk is low")
		self.assertEqual(self.store.read(path), before)
		row = frappe.get_doc("Content File", content_files.row_name(path))
		self.assertEqual(row.local_status, "Pending")
		self.assertIn("generation is paused", row.local_error)
		self.assertEqual(publishing.retry_pending_writes(), 0)  # still low: nothing written, nothing lost

		set_cdn_settings(min_free_disk_percent=0)
		self.assertGreaterEqual(publishing.retry_pending_writes(), 1)
		self.assertEqual(self.read_json(path)["body"], "saved while the disk is low")

	def test_a_failing_serialiser_keeps_no_other_file_from_disk(self):
		"""One document whose serialiser raises: logged and marked Failed; the rest of the commit is written."""
		_plan, _subject, units = self.make_tree()
		broken, fine = units
		real = publishing.serialize

		def serialize(doc, ctx):
			if doc.name == broken.name:
				raise RuntimeError("serialiser bug")
			return real(doc, ctx)

		with patch("memora_storage.publishing.serialize", serialize):
			broken.reload()
			broken.body = "never rendered"
			broken.save()
			fine.reload()
			fine.body = "rendered"
			fine.save()
			frappe.db.commit()
		self.assertEqual(self.read_json(f"units/{fine.name}.json")["body"], "rendered")
		self.assertEqual(self.read_json(f"units/{broken.name}.json")["body"], "body 1")  # old file intact
		row = frappe.get_doc("Content File", content_files.row_name(f"units/{broken.name}.json"))
		self.assertEqual((row.local_status, row.local_error), ("Failed", "serialiser bug"))
		self.assertTrue(
			frappe.db.exists(
				"Error Log", {"reference_name": broken.name, "method": ["like", "%could not render%"]}
			)
		)

	def test_a_document_without_its_parent_has_no_path_yet(self):
		subject_type = content_map.get_content_map()["Subject"]
		self.assertIsNone(content_map.path_of(subject_type, frappe._dict(name="S1", plan=None)))
		self.assertEqual(
			content_map.path_of(subject_type, frappe._dict(name="S1", plan="P1")), "plans/P1/subjects/S1.json"
		)

	def test_rows_know_the_file_that_lists_them_and_the_patch_fills_old_rows(self):
		from memora_storage.patches import fill_content_file_parents

		plan, subject, units = self.make_tree()
		expected = {
			f"plans/{plan.name}/manifest.json": None,
			f"plans/{plan.name}/subjects/{subject.name}.json": f"plans/{plan.name}/manifest.json",
			f"units/{units[0].name}.json": f"plans/{plan.name}/subjects/{subject.name}.json",
		}
		names = {content_files.row_name(path): path for path in expected}

		def parents() -> dict:
			rows = frappe.get_all(
				"Content File", filters={"name": ["in", list(names)]}, fields=["path", "parent_path"]
			)
			return {row.path: row.parent_path for row in rows}

		self.assertEqual(parents(), expected)
		frappe.db.set_value("Content File", {"name": ["in", list(names)]}, "parent_path", None)
		fill_content_file_parents.execute()
		self.assertEqual(parents(), expected)

	def test_a_parent_lists_its_children_as_frappe_reads_them(self):
		"""The listing read as one JSON array from MariaDB holds what `frappe.get_all` gives, in the
		content map's order: titles with quotes, Arabic, emoji and none at all; an order or a field
		the array cannot take goes through `frappe.get_all` itself."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan.name)
		titles = ['say "hi" \\ there', "وحدة ١", "😀 </script>", None, "z", "a"]
		for i, title in enumerate(titles):
			unit = self.make("Unit", f"unit-{self.tag}-{i}", commit=False, subject=subject.name)
			frappe.db.set_value("Unit", unit.name, "title", title, update_modified=False)
		frappe.db.commit()
		unit_type = content_map.get_content_map()["Unit"]
		meta = frappe.get_meta("Unit")

		def both(child: content_map.ContentType, fields: list[str]) -> tuple[list, list]:
			listed = publishing._listed_rows(child, meta, fields, subject.name)
			expected = frappe.get_all(
				"Unit", filters={"subject": subject.name}, fields=fields, order_by=child.order_by
			)
			return [dict(row) for row in listed], [dict(row) for row in expected]

		listed, expected = both(unit_type, ["name", "title"])
		self.assertEqual(listed, expected)
		self.assertEqual([row["title"] for row in listed], titles)  # creation order, titles as stored
		by_title = dataclasses.replace(unit_type, order_by="title desc, name asc")
		listed, expected = both(by_title, ["name", "title"])
		self.assertEqual(listed, expected)
		self.assertEqual(listed[0]["title"], "😀 </script>")
		self.assertEqual(both(unit_type, ["creation", "name"])[0], both(unit_type, ["creation", "name"])[1])
		odd_order = dataclasses.replace(unit_type, order_by="length(title) asc, name asc")
		self.assertEqual(*both(odd_order, ["name", "title"]))
		self.assertEqual(publishing._listed_rows(unit_type, meta, ["name", "title"], "no-such-subject"), [])

	def test_each_parent_field_is_indexed_once(self):
		"""Every save reads a parent's children by the parent field: after a migrate it has an index."""

		def leading(doctype: str, field: str) -> list:
			return frappe.db.sql(
				f"show index from `tab{doctype}` where Column_name=%s and Seq_in_index=1", field
			)

		for index in leading("Unit", "subject"):
			frappe.db.sql_ddl(f"alter table `tabUnit` drop index `{index[2]}`")
		self.assertEqual(leading("Unit", "subject"), ())
		self.assertIn("Unit", content_map.index_parent_fields())
		self.assertEqual(len(leading("Unit", "subject")), 1)
		self.assertEqual(content_map.index_parent_fields(), [])  # an index starting with it is enough
		self.assertEqual(len(leading("Subject", "plan")), 1)
