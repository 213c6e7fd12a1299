# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from memora_storage import content_files


class ContentFile(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		attempts: DF.Int
		failure_alerted: DF.Check
		first_failure_at: DF.Datetime | None
		last_error: DF.SmallText | None
		last_synced_at: DF.Datetime | None
		local_error: DF.SmallText | None
		local_status: DF.Literal["Written", "Pending", "Failed", "Deleted"]
		next_attempt_at: DF.Datetime | None
		parent_path: DF.Data | None
		path: DF.Data | None
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
		sha256: DF.Data | None
		size: DF.Int
		sync_claim: DF.Data | None
		sync_operation: DF.Literal["Upload", "Delete"]
		sync_status: DF.Literal["Pending", "Syncing", "Synced", "Failed"]
		synced_sha256: DF.Data | None
		written_at: DF.Datetime | None

	# end: auto-generated types
	def autoname(self):
		self.name = content_files.row_name(self.path)

	@frappe.whitelist()
	def retry_sync(self) -> None:
		"""Start a fresh CDN schedule for this file (an administrator's retry)."""
		frappe.only_for("System Manager")
		content_files.retry([self.name])
		frappe.msgprint(_("{0} queued for the CDN.").format(frappe.bold(self.path)), alert=True)


def on_doctype_update():
	"""The columns the drain, the dispatcher and folder deletes filter on."""
	frappe.db.add_index("Content File", ["sync_status", "next_attempt_at"])
	frappe.db.add_index("Content File", ["sync_claim"])
	frappe.db.add_index("Content File", ["path(255)"])
	frappe.db.add_index("Content File", ["parent_path(255)"])
