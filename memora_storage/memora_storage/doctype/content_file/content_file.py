# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from memora_storage import cdn_sync
from memora_storage.content_files import row_name


class ContentFile(Document):
	def autoname(self):
		self.name = row_name(self.path)

	@frappe.whitelist()
	def retry_sync(self) -> None:
		"""Start a fresh CDN schedule for this file (the manual retry of FR-017)."""
		frappe.only_for("System Manager")
		cdn_sync.retry([self.name])
		frappe.msgprint(_("{0} queued for the CDN.").format(frappe.bold(self.path)), alert=True)


def on_doctype_update():
	"""The columns the drain, the dispatcher and folder deletes filter on."""
	frappe.db.add_index("Content File", ["sync_status", "next_attempt_at"])
	frappe.db.add_index("Content File", ["sync_claim"])
	frappe.db.add_index("Content File", ["path(255)"])
	frappe.db.add_index("Content File", ["parent_path(255)"])
