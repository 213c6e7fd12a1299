# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document
from frappe.utils import add_days, now_datetime


class ContentHealthReport(Document):
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
