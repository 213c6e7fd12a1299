# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class CDNHealth(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		changed_at: DF.Datetime | None
		failed_probes: DF.Int
		failing_since: DF.Datetime | None
		healthy_probes: DF.Int
		last_error: DF.SmallText | None
		last_probe_at: DF.Datetime | None
		state: DF.Literal["Healthy", "Down"]

	# end: auto-generated types
