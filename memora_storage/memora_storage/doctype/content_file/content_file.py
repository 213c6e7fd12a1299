# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document

from memora_storage.content_files import row_name


class ContentFile(Document):
	def autoname(self):
		self.name = row_name(self.path)


def on_doctype_update():
	"""The columns the drain, the dispatcher and folder deletes filter on."""
	frappe.db.add_index("Content File", ["sync_status", "next_attempt_at"])
	frappe.db.add_index("Content File", ["sync_claim"])
	frappe.db.add_index("Content File", ["path(255)"])
