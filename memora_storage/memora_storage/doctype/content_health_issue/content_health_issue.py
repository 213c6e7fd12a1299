# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class ContentHealthIssue(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		detail: DF.SmallText | None
		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		path: DF.Data | None
		problem: DF.Literal[
			"Missing",
			"Orphaned",
			"Stale",
			"Invalid",
			"Not Checked",
			"Missing on CDN",
			"Extra on CDN",
			"Mismatch on CDN",
		]
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
	# end: auto-generated types
	pass
