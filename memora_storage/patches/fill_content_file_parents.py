"""Content File rows written before `parent_path` existed learn which file lists them, so the drain
sends children first and deletes a child only once its parent stops listing it."""

import frappe

from memora_storage import content, content_files


def execute():
	content_map = content.get_content_map()
	rows = frappe.get_all(
		content_files.DOCTYPE,
		filters={"parent_path": ["is", "not set"], "reference_doctype": ["in", list(content_map)]},
		fields=["name", "reference_doctype", "reference_name"],
	)
	for row in rows:
		content_type = content_map[row.reference_doctype]
		if not content_type.parent_doctype:
			continue
		parent = frappe.db.get_value(row.reference_doctype, row.reference_name, content_type.parent_field)
		if parent_path := content.parent_path_of(
			content_type, frappe._dict({content_type.parent_field: parent})
		):
			frappe.db.set_value(
				content_files.DOCTYPE, row.name, "parent_path", parent_path, update_modified=False
			)
