"""Which fields a content file publishes: a decision of the content map, never whatever the DocType holds.

Each `ContentType` names its fields in `fields`: a tuple of fieldnames, or the dotted path of a rule (a
function taking a DocType's meta and returning the fieldnames to publish). The default rule keeps only what
a guest could be shown: no Password, hidden, permlevel > 0 or virtual fields, no layout fields, and none of
Frappe's own fields (owner, creation, modified_by, docstatus, idx, _user_tags, parent, …), which are not in
a meta's fields at all. An explicit tuple may name Frappe's own fields; a Password is never published.
Attach and Attach Image values pointing at a private file (/private/files/…) are published as null.
The rows of a Table field go through the rule too, with their own DocType's meta (a tuple names the
mapped DocType's fields: its tables' rows then follow the default rule).

A change of what would be published re-renders every file, so no file keeps a field that is no longer
public: a signature of each mapped DocType's published fields is stored and compared after a migrate,
after a committed save or delete of a DocType, Custom Field or Property Setter (Customize Form), and
hourly, because Customize Form removes a Property Setter without a document event when a field goes back
to its standard value.
"""

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlsplit

import frappe
from frappe.model import child_table_fields, default_fields, display_fieldtypes, optional_fields, table_fields
from frappe.model.document import Document

from memora_storage import jobs

DEFAULT_RULE = "memora_storage.published_fields.default_rule"
ATTACH_FIELDTYPES = ("Attach", "Attach Image")
SIGNATURES_KEY = "memora_storage_published_fields"
# The DocTypes whose saves and deletes can change a meta: each names the DocType it changes in this field.
META_DOCTYPES = {"DocType": "name", "Custom Field": "dt", "Property Setter": "doc_type"}

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


def _rows_rule(fields: Fields) -> Fields:
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
			data[name] = [values(row, _rows_rule(fields)) for row in doc.get(name) or []]
		elif fieldtype in ATTACH_FIELDTYPES and is_private_file(valid.get(name)):
			data[name] = None
		else:
			data[name] = valid[name] if name in valid else doc.get(name)
	return data


def is_private_file(value) -> bool:
	"""True for a file URL that Frappe serves only to users allowed to read the File (/private/…)."""
	return isinstance(value, str) and urlsplit(value.strip()).path.startswith("/private/")


# Signatures: what would be published, per mapped DocType ---------------------------------------------


def _spec(meta, fields: Fields, get_meta: Callable) -> list:
	"""[fieldname, fieldtype, rows' spec] of each published field: all that decides a file's keys."""
	spec = []
	for name in fieldnames(meta, fields):
		df = meta.get_field(name)
		entry = [name, df.fieldtype if df else "Standard"]
		if df and df.fieldtype in table_fields and df.options:
			entry.append(_spec(get_meta(df.options), _rows_rule(fields), get_meta))
		spec.append(entry)
	return spec


def signatures() -> dict[str, str]:
	"""DocType → SHA-256 of its published field set, from the metas in the database (not a cache)."""
	from memora_storage.content import get_content_map

	def get_meta(doctype: str):
		return frappe.get_meta(doctype, cached=False)

	found = {}
	for doctype, content_type in get_content_map().items():
		if not frappe.db.exists("DocType", doctype):
			continue
		spec = _spec(get_meta(doctype), content_type.fields, get_meta)
		found[doctype] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
	return found


def stored_signatures() -> dict[str, str]:
	value = frappe.db.get_global(SIGNATURES_KEY)
	return json.loads(value) if value else {}


def refresh() -> list[str]:
	"""Store the current signatures; the mapped DocTypes whose published fields changed since the last call.

	Their cached metas are cleared too: another process may have cached a meta read just before the
	change committed, and the rebuild must render with the new one.
	"""
	current = signatures()
	stored = stored_signatures()
	changed = sorted(doctype for doctype, signature in current.items() if stored.get(doctype) != signature)
	for doctype in changed:
		frappe.clear_cache(doctype=doctype)
	if current != stored:
		frappe.db.set_global(SIGNATURES_KEY, json.dumps(current, sort_keys=True))
	return changed


def check() -> list[str]:
	"""Hourly, and after a meta change commits: queue a rebuild if what is published changed."""
	changed = refresh()
	if changed:
		jobs.request_rebuild()
	frappe.db.commit()
	return changed


def after_migrate() -> None:
	"""A migrate may change DocTypes, customisations or the content map: rebuild once it commits."""
	if refresh():
		frappe.db.after_commit.add(jobs.request_rebuild)


def _watched() -> set[str]:
	"""The mapped DocTypes and the DocTypes of their tables' rows."""
	from memora_storage.content import get_content_map

	watched = set()
	for doctype in get_content_map():
		if frappe.db.exists("DocType", doctype):
			watched.add(doctype)
			watched.update(df.options for df in frappe.get_meta(doctype).get_table_fields())
	return watched


def on_meta_change(doc: Document, method: str | None = None) -> None:
	"""Doc event of DocType, Custom Field and Property Setter: check the signatures once this commits."""
	if (
		frappe.flags.in_migrate
		or frappe.flags.in_install
		or getattr(frappe.local, "memora_meta_check", False)
	):
		return
	if doc.get(META_DOCTYPES[doc.doctype]) not in _watched():
		return
	frappe.local.memora_meta_check = True
	frappe.db.after_commit.add(_check_committed)
	frappe.db.after_rollback.add(_forget)


def _forget() -> None:
	frappe.local.memora_meta_check = False


def _check_committed() -> None:
	_forget()
	check()
