"""Which fields a content file publishes: a decision of the content map, never whatever the DocType holds.

Each `ContentType` names its fields in `fields`: a tuple of fieldnames, or the dotted path of a rule (a
function taking a DocType's meta and returning the fieldnames to publish). The default rule keeps only what
a guest could be shown: no Password, hidden, permlevel > 0 or virtual fields, no layout fields, and none of
Frappe's own fields (owner, creation, modified_by, docstatus, idx, _user_tags, parent, …), which are not in
a meta's fields at all. An explicit tuple may name Frappe's own fields; a Password is never published.
Attach and Attach Image values pointing at a private file (/private/files/…) are published as null.
The rows of a Table field go through the rule too, with their own DocType's meta (a tuple names the
mapped DocType's fields: its tables' rows then follow the default rule).

A change of what would be published re-renders every file (`meta_changes.py`).
"""

from urllib.parse import urlsplit

import frappe
from frappe.model import child_table_fields, default_fields, display_fieldtypes, optional_fields, table_fields
from frappe.model.document import Document

DEFAULT_RULE = "memora_storage.published_fields.default_rule"
ATTACH_FIELDTYPES = ("Attach", "Attach Image")

Fields = tuple[str, ...] | str


def default_rule(meta) -> list[str]:
	"""The fields a guest may see: stored values that are neither secret, hidden nor behind a permlevel."""
	return [
		df.fieldname
		for df in meta.fields
		if df.fieldtype not in display_fieldtypes
		and df.fieldtype != "Password"
		and not df.hidden
		and not df.permlevel
		and not df.is_virtual
	]


def fieldnames(meta, fields: Fields) -> list[str]:
	"""The fieldnames `fields` publishes for this meta, in order; names the DocType does not have are left out."""
	names = frappe.get_attr(fields)(meta) if isinstance(fields, str) else fields
	own = {*default_fields, *optional_fields, *(child_table_fields if meta.istable else ())}
	published = []
	for name in dict.fromkeys(names):
		df = meta.get_field(name)
		if (df and df.fieldtype != "Password") or (not df and name in own):
			published.append(name)
	return published


def rows_rule(fields: Fields) -> Fields:
	"""The rule a table's rows follow: the mapped DocType's rule, or the default for a tuple."""
	return fields if isinstance(fields, str) else DEFAULT_RULE


def values(doc: Document, fields: Fields) -> dict:
	"""The published fields of a document or child row, with values as Frappe's `as_dict` gives them."""
	meta = doc.meta
	names = fieldnames(meta, fields)
	wants_virtual = any(getattr(meta.get_field(name), "is_virtual", 0) for name in names)
	valid = doc.get_valid_dict(convert_dates_to_str=True, ignore_virtual=not wants_virtual)
	data = {}
	for name in names:
		df = meta.get_field(name)
		fieldtype = df.fieldtype if df else None
		if fieldtype in table_fields:
			data[name] = [values(row, rows_rule(fields)) for row in doc.get(name) or []]
		elif fieldtype in ATTACH_FIELDTYPES and is_private_file(valid.get(name)):
			data[name] = None
		else:
			data[name] = valid[name] if name in valid else doc.get(name)
	return data


def is_private_file(value) -> bool:
	"""True for a file URL that Frappe serves only to users allowed to read the File (/private/…)."""
	return isinstance(value, str) and urlsplit(value.strip()).path.startswith("/private/")
