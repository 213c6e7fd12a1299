"""Re-render every file when what a mapped DocType publishes changes, so no file keeps a field that is
no longer public.

A signature of each mapped DocType's published fields is stored and compared after a migrate, after a
committed save or delete of a DocType, Custom Field or Property Setter (Customize Form), and hourly,
because Customize Form removes a Property Setter without a document event when a field goes back to
its standard value.
"""

import hashlib
import json
from collections.abc import Callable

import frappe
from frappe.model import table_fields
from frappe.model.document import Document

from memora_storage import after_commit, jobs, published_fields
from memora_storage.content_map import get_content_map

SIGNATURES_KEY = "memora_storage_published_fields"
# The DocTypes whose saves and deletes can change a meta: each names the DocType it changes in this field.
META_DOCTYPES = {"DocType": "name", "Custom Field": "dt", "Property Setter": "doc_type"}


def _spec(meta, fields: published_fields.Fields, get_meta: Callable) -> list:
	"""[fieldname, fieldtype, rows' spec] of each published field: all that decides a file's keys."""
	spec = []
	for name in published_fields.fieldnames(meta, fields):
		df = meta.get_field(name)
		entry = [name, df.fieldtype if df else "Standard"]
		if df and df.fieldtype in table_fields and df.options:
			entry.append(_spec(get_meta(df.options), published_fields.rows_rule(fields), get_meta))
		spec.append(entry)
	return spec


def signatures() -> dict[str, str]:
	"""DocType → SHA-256 of its published field set, from the metas in the database (not a cache)."""

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
		after_commit.once("rebuild", jobs.request_rebuild)


def _watched() -> set[str]:
	"""The mapped DocTypes and the DocTypes of their tables' rows."""
	watched = set()
	for doctype in get_content_map():
		if frappe.db.exists("DocType", doctype):
			watched.add(doctype)
			watched.update(df.options for df in frappe.get_meta(doctype).get_table_fields())
	return watched


def on_meta_change(doc: Document, method: str | None = None) -> None:
	"""Doc event of DocType, Custom Field and Property Setter: check the signatures once this commits."""
	if frappe.flags.in_migrate or frappe.flags.in_install:
		return
	if doc.get(META_DOCTYPES[doc.doctype]) in _watched():
		after_commit.once("meta-check", check)
