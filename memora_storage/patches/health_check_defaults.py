"""CDN Settings saved before the health-check fields existed hold no value for them: store their defaults,
or the form would show (and its next save keep) 0 for each, and a Single's Check or Int reads 0 when unset."""

import frappe

FIELDS = ("regenerate_missing_files", "health_check_start_hour", "health_check_end_hour")


def execute() -> None:
	stored = frappe.db.get_singles_dict("CDN Settings")
	if not stored:  # never saved: the form and the jobs get every default from the DocType
		return
	meta = frappe.get_meta("CDN Settings")
	for fieldname in FIELDS:
		if fieldname not in stored:
			frappe.db.set_single_value(
				"CDN Settings", fieldname, meta.get_field(fieldname).default, update_modified=False
			)
