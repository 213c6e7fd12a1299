# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

import frappe
from frappe.model.document import Document
from frappe.query_builder import Interval
from frappe.query_builder.functions import Now


class CDNProbe(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		error: DF.SmallText | None
		http_status: DF.Int
		latency_ms: DF.Float
		outcome: DF.Literal["Healthy", "Failed"]
		probed_at: DF.Datetime | None
		source: DF.Literal["Probe", "Upload"]

	# end: auto-generated types

	@staticmethod
	def clear_old_logs(days: int = 7) -> None:
		"""Log Settings calls this daily: a probe a minute is 1,440 rows a day."""
		table = frappe.qb.DocType("CDN Probe")
		frappe.db.delete(table, filters=(table.probed_at < (Now() - Interval(days=days))))


def on_doctype_update():
	# The CDN Settings form and the workspace read the newest probes; Log Settings deletes the oldest.
	frappe.db.add_index("CDN Probe", ["probed_at"])
