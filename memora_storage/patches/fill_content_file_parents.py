"""Content File rows written before `parent_path` existed learn which file lists them, so the drain
sends children first and deletes a child only once its parent stops listing it."""

import frappe

from memora_storage import content_files
from memora_storage.content_map import get_content_map, parent_path_of


def execute():
	content_map = get_content_map()
	rows = content_files.without_parent_path(list(content_map))
	for row in rows:
		content_type = content_map[row.reference_doctype]
		if not content_type.parent_doctype:
			continue
		parent = frappe.db.get_value(row.reference_doctype, row.reference_name, content_type.parent_field)
		if parent_path := parent_path_of(content_type, frappe._dict({content_type.parent_field: parent})):
			content_files.set_parent_path(row.name, parent_path)
