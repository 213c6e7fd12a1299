"""Frappe whitelisted methods this app replaces (`override_whitelisted_methods` in hooks.py), and why."""

import frappe
from frappe import _, client


@frappe.whitelist()
def get_count(doctype: str, filters=None, debug: bool = False, cache: bool = False) -> int:
	"""`frappe.client.get_count`, for users who may select or read the DocType only.

	Frappe v15's counts rows of any table for any logged-in user, filters included: a Website User could
	read CDN Settings one character at a time (`doctype=Singles`, `value like 'a%'`), or Content File rows.
	"""
	if not (frappe.has_permission(doctype, "select") or frappe.has_permission(doctype, "read")):
		frappe.throw(_("No permission for {0}").format(_(doctype)), frappe.PermissionError)
	return client.get_count(doctype, filters, debug, cache)
