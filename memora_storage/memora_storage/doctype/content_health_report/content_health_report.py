# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import add_days, now_datetime

from memora_storage import brake, jobs, progress, scans, verification


class ContentHealthReport(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from memora_storage.memora_storage.doctype.content_health_issue.content_health_issue import (
			ContentHealthIssue,
		)

		cdn_deleted_count: DF.Int
		cdn_extra_count: DF.Int
		cdn_mismatch_count: DF.Int
		cdn_missing_count: DF.Int
		checked_at: DF.Datetime | None
		contents_checked: DF.Check
		deletion_confirmed: DF.Check
		deletion_source: DF.Literal["", "Drain", "Verification"]
		details_file: DF.Attach | None
		disk_free_percent: DF.Float
		disk_status: DF.Literal["", "Healthy", "Low"]
		duration_seconds: DF.Float
		expected_count: DF.Int
		files_count: DF.Int
		invalid_count: DF.Int
		issues: DF.Table[ContentHealthIssue]
		issues_truncated: DF.Check
		missing_count: DF.Int
		orphaned_count: DF.Int
		orphans_deleted_count: DF.Int
		regenerated_count: DF.Int
		scope: DF.Literal["Hourly", "Full", "Manual", "CDN Verification"]
		stale_count: DF.Int
		status: DF.Literal["Healthy", "Problems Found", "Failed"]
		summary: DF.SmallText | None

	# end: auto-generated types
	@frappe.whitelist()
	def resync(self) -> bool:
		"""Queue an upload of what this verification found missing on or different from the CDN.

		A job: every listed file is read. False when one is already running for this report.
		"""
		frappe.only_for("System Manager")
		if self.scope != "CDN Verification":
			frappe.throw(_("Only a CDN verification's report lists files to resync."))
		return self._queue("run_resync")

	@frappe.whitelist()
	def delete_orphans(self) -> bool:
		"""Delete the orphaned files this scan listed, those still orphans now.

		A job: each file is checked against every record first. False when one is already running.
		"""
		frappe.only_for("System Manager")
		if self.scope not in scans.SCOPES:
			frappe.throw(_("Only a health scan's report lists orphaned files."))
		return self._queue("run_delete_orphans")

	def run_resync(self) -> int:
		"""The Resync job; the user who asked sees its progress and is told how many files were queued."""
		with progress.Task(_("Resync"), user=frappe.session.user) as task:
			count = verification.resync(
				self,
				on_progress=task.counter(_("Files read: {0} of {1}")),
			)
			task.done(
				_("{0} content files queued for the CDN.").format(count), doctype=self.doctype, name=self.name
			)
		return count

	def run_delete_orphans(self) -> dict[str, int]:
		"""The Delete Orphans job; the user who asked sees its progress and is told what was done."""
		with progress.Task(_("Delete Orphans"), user=frappe.session.user) as task:
			counts = scans.delete_orphans(
				self,
				on_progress=task.counter(_("Files checked: {0} of {1}")),
			)
			task.done(
				_(
					"{0} orphaned files deleted; {1} kept because a record expects them now or they changed."
				).format(counts["deleted"], counts["kept"]),
				indicator="orange" if counts["failed"] else "green",
				doctype=self.doctype,
				name=self.name,
			)
		self.notify_update()  # an open form reloads to show the new Orphans Deleted count
		return counts

	@frappe.whitelist()
	def delete_extra_objects(self) -> bool:
		"""Delete the objects this verification found on the CDN and not here, those still so now;
		above the deletion brake nothing is deleted and a Deletion Brake report lists them."""
		frappe.only_for("System Manager")
		if self.scope != "CDN Verification":
			frappe.throw(_("Only a CDN verification's report lists objects only on the CDN."))
		return self._queue("run_delete_extra_objects")

	@frappe.whitelist()
	def confirm_deletion(self) -> bool:
		"""An administrator confirms that exactly the CDN objects this Deletion Brake report lists go."""
		frappe.only_for("System Manager")
		if self.scope != brake.SCOPE or self.deletion_confirmed:
			frappe.throw(_("Only an unconfirmed Deletion Brake report can be confirmed."))
		return self._queue("run_confirm_deletion")

	def run_delete_extra_objects(self) -> int:
		with progress.Task(_("Delete Extra Objects"), user=frappe.session.user) as task:
			count = brake.delete_extra(self)
			task.done(
				_("{0} objects deleted from the CDN.").format(count)
				if count
				else _("Nothing deleted: see the Deletion Brake report if one was written."),
				doctype=self.doctype,
				name=self.name,
			)
		return count

	def run_confirm_deletion(self) -> int:
		with progress.Task(_("Confirm Deletion"), user=frappe.session.user) as task:
			count = brake.confirm(self)
			task.done(
				_("{0} CDN objects are deleted (or queued for deletion).").format(count),
				doctype=self.doctype,
				name=self.name,
			)
		self.notify_update()
		return count

	def _queue(self, method: str) -> bool:
		"""Run `method` of this report on the long queue, once at a time per report."""
		queued = jobs.enqueue_doc_once(self, method)
		if queued:
			frappe.msgprint(_("Started in the background; you will be told when it ends."), alert=True)
		else:
			frappe.msgprint(_("This is already running for this report; you will be told when it ends."))
		return queued

	@staticmethod
	def clear_old_logs(days: int = 90) -> None:
		"""Log Settings calls this daily: scans write a dozen reports a day, so old ones go, with their
		problem rows and attached JSON."""
		for name in frappe.get_all(
			"Content Health Report",
			filters={"creation": ["<", add_days(now_datetime(), -days)]},
			pluck="name",
		):
			frappe.delete_doc("Content Health Report", name, ignore_permissions=True, force=True)
