# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

"""The workspace chart Content Files by Sync Status, one slice per status in a fixed order.

Frappe colours a chart's slices by position, and a Group By chart orders them by count, so no colour
could stay with its status there: Failed was light blue, Synced dark blue. Here the order is fixed and
the chart's custom_options give each position its status colour, zero-count statuses included.
"""

import frappe
from frappe import _

from memora_storage import uploads

DOCTYPE = "Content File"
# In the order of the chart's custom_options colours: green, blue, red, orange (last: the legend gives
# each entry a fixed width, and Waiting for CDN is the longest label).
STATUSES = ("Synced", "Syncing", "Failed", "Pending")


@frappe.whitelist()
def get(chart_name: str | None = None, **kwargs) -> dict:
	"""Content File rows per sync status (the reader's permissions apply); Pending is named Waiting for
	CDN while delivery is local, as in the Content File list."""
	counts = dict(
		frappe.get_list(
			DOCTYPE, fields=["sync_status", "count(*) as count"], group_by="sync_status", as_list=True
		)
	)
	waiting = uploads.waiting()
	return {
		"labels": [
			_("Waiting for CDN") if status == "Pending" and waiting else _(status) for status in STATUSES
		],
		"datasets": [{"name": _("Content Files"), "values": [counts.get(status, 0) for status in STATUSES]}],
	}
