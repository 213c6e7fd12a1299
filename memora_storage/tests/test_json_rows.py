"""json_rows.chunks, which feeds the nightly scan every record: each row once, in pages read from the
index on `modified` alone."""

import frappe
from frappe.tests.utils import FrappeTestCase

from memora_storage import json_rows

DOCTYPE = "ToDo"  # a plain document table of Frappe's own: its index on `modified` is Frappe's
FIELDS = ["name", "modified", "status"]


class TestChunks(FrappeTestCase):
	def setUp(self):
		# Rows saved in the same microsecond (an import's), and rows with no `modified` at all (written
		# behind Frappe's back), placed so that pages of 4 end inside both groups.
		frappe.db.bulk_insert(
			DOCTYPE,
			["name", "modified", "creation", "description", "status"],
			[
				(f"jr-{i:02d}", modified, "2026-01-01", "json_rows", "Open")
				for i, modified in enumerate(
					[None] * 5
					+ ["2026-01-02 10:00:00.000001"] * 6
					+ [f"2026-01-0{d} 09:00:00" for d in (3, 4)]
				)
			],
		)
		self.addCleanup(frappe.db.rollback)

	def expected(self) -> list[list]:
		return [
			[name, modified, status]
			for name, modified, status in frappe.db.sql(
				f"select name, modified, status from `tab{DOCTYPE}` order by modified, name"
			)
		]

	def test_every_row_once_in_modified_order(self):
		pages = list(json_rows.chunks(DOCTYPE, FIELDS, size=4))
		rows = [row for page in pages for row in page]
		expected = self.expected()
		self.assertEqual([row[0] for row in rows], [row[0] for row in expected])
		self.assertEqual([row[2] for row in rows], [row[2] for row in expected])
		self.assertEqual(
			[row[1] for row in rows],
			[None if row[1] is None else row[1].isoformat(" ", "microseconds") for row in expected],
		)
		self.assertTrue(all(len(page) == 4 for page in pages[:-1]), [len(page) for page in pages])

	def test_a_page_of_name_and_modified_reads_the_index_alone(self):
		for last in (None, ["jr-02", None], ["jr-07", "2026-01-02 10:00:00.000001"]):
			query, values = json_rows.page_query(DOCTYPE, ["name", "modified"], last, 4)
			plan = frappe.db.sql(f"explain {query}", values, as_dict=True)
			self.assertEqual(len(plan), 1, plan)
			self.assertEqual(plan[0].key, "modified", plan)
			self.assertIn("Using index", plan[0].Extra, plan)
			self.assertNotIn("filesort", plan[0].Extra, plan)

	def test_name_and_modified_come_first(self):
		with self.assertRaises(ValueError):
			next(json_rows.chunks(DOCTYPE, ["name", "status", "modified"]))
