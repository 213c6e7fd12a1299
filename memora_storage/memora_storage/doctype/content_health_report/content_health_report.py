# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class ContentHealthReport(Document):
	pass
