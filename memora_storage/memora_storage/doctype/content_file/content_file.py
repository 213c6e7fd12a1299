# Copyright (c) 2026, Memora and contributors
# For license information, please see license.txt

from frappe.model.document import Document

from memora_storage.content_files import row_name


class ContentFile(Document):
	def autoname(self):
		self.name = row_name(self.path)
