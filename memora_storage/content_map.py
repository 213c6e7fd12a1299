"""The content map: which DocTypes become files, where each file lives, which file lists it, and which
fields it publishes. Other apps change it through the `memora_content_map` hook."""

import functools
import re
import string
from dataclasses import dataclass

import frappe
from frappe.utils.caching import site_cache

from memora_storage import published_fields
from memora_storage.utils import paths

DEFAULT_SERIALIZER = "memora_storage.publishing.serialize"
SORT_KEY = re.compile(r"`?(\w+)`?(?: (?:asc|desc))?", re.IGNORECASE)


@dataclass(frozen=True)
class ContentType:
	"""How one DocType becomes a file: where it lives, which file lists it, which fields it publishes.

	`fields` is a tuple of fieldnames or the dotted path of a rule (see `published_fields`).
	"""

	doctype: str
	path: str
	parent_field: str | None = None
	parent_doctype: str | None = None
	list_key: str | None = None
	folder: str | None = None
	serializer: str = DEFAULT_SERIALIZER
	fields: published_fields.Fields = published_fields.DEFAULT_RULE
	order_by: str = "creation asc, name asc"

	@functools.cached_property
	def path_fields(self) -> list[str]:
		return [name for _, name, _, _ in string.Formatter().parse(self.path) if name]

	@functools.cached_property
	def sort_fields(self) -> list[str] | None:
		"""The fields `order_by` sorts on; None for an order of more than plain fields and directions."""
		keys = [SORT_KEY.fullmatch(part.strip()) for part in self.order_by.split(",")]
		return [key.group(1) for key in keys] if all(keys) else None


DEFAULT_CONTENT_MAP = {
	"Plan": ContentType("Plan", "plans/{name}/manifest.json", folder="plans/{name}"),
	"Subject": ContentType(
		"Subject",
		"plans/{plan}/subjects/{name}.json",
		parent_field="plan",
		parent_doctype="Plan",
		list_key="subjects",
	),
	"Unit": ContentType(
		"Unit", "units/{name}.json", parent_field="subject", parent_doctype="Subject", list_key="units"
	),
}


@site_cache()
def get_content_map() -> dict[str, ContentType]:
	"""The defaults, passed through every `memora_content_map` hook (a function taking and returning the map).

	Kept per site and process (cleared with the cache): every document event of every DocType asks.
	"""
	content_map = dict(DEFAULT_CONTENT_MAP)
	for hook in frappe.get_hooks("memora_content_map"):
		content_map = frappe.get_attr(hook)(content_map)
	return content_map


def content_type_of(doc) -> ContentType | None:
	return get_content_map().get(doc.doctype)


def path_of(content_type: ContentType, doc, remember: bool = True) -> str | None:
	"""The content path of a document or a row carrying the fields its path rule names.

	None while a field of the rule other than the name is empty (a Subject without a Plan): such a
	document has no place on disk until it is filled. Unsafe values raise InvalidPathError. A scan,
	asking once per record, passes `remember=False`: the bounded cache would only churn.
	"""
	values = tuple((name, doc.get(name)) for name in content_type.path_fields)
	if any(not value for name, value in values if name != "name"):
		return None
	if not remember:
		return paths.render_path(content_type.path, dict(values))
	return _render_path(content_type.path, values)


@functools.lru_cache(maxsize=4096)
def _render_path(template: str, values: tuple) -> str:
	"""`paths.render_path`, remembered: a parent's render asks for every child's path, each save again.
	Bounded to a few MB, so a job's memory is the same for 10,000 files or 100,000."""
	return paths.render_path(template, dict(values))


def folder_of(content_type: ContentType, name: str) -> str | None:
	return paths.render_path(content_type.folder, {"name": name}) if content_type.folder else None


def existing_path(content_type: ContentType, doc, folder: bool = False) -> str | None:
	"""The path (or folder) a document's file may have; None for a name no file could ever carry,
	such as one written to the database behind the app's back, so its delete is never blocked."""
	try:
		return folder_of(content_type, doc.name) if folder else path_of(content_type, doc)
	except paths.InvalidPathError:
		return None


def parent_of(content_type: ContentType, doc) -> tuple[str, str] | None:
	"""The (DocType, name) of the document whose file lists this one, if any."""
	if content_type.parent_doctype and (parent := doc.get(content_type.parent_field)):
		return content_type.parent_doctype, parent
	return None


def parent_path_of(content_type: ContentType, doc) -> str | None:
	"""The path of the file that lists this document (a Unit's Subject file), if any."""
	parent_name = content_type.parent_doctype and doc.get(content_type.parent_field)
	if not parent_name:
		return None
	parent_type = get_content_map()[content_type.parent_doctype]
	fields = [name for name in parent_type.path_fields if name != "name"]
	if fields:
		# Plain SQL: the query builder's field checks cost more than the query, once per save.
		found = frappe.db.sql(
			f"select {', '.join(f'`{field}`' for field in fields)} from `tab{parent_type.doctype}` where name = %s",
			parent_name,
			as_dict=True,
		)
		if not found:
			return None
		values = found[0]
	else:
		values = {}
	try:
		return path_of(parent_type, frappe._dict(values, name=parent_name))
	except paths.InvalidPathError:
		return None


def index_parent_fields() -> list[str]:
	"""Index each mapped DocType's parent field where no index starts with it: every save renders the
	parent's listing by that field, and a Link field has no index of its own. After install and
	migrate; returns the DocTypes indexed."""
	indexed = []
	for content_type in get_content_map().values():
		doctype, field = content_type.doctype, content_type.parent_field
		if not (field and frappe.db.table_exists(doctype) and frappe.db.has_column(doctype, field)):
			continue
		leading = frappe.db.sql(
			f"show index from `tab{doctype}` where Column_name=%s and Seq_in_index=1", (field,)
		)
		if not leading:
			frappe.db.add_index(doctype, [field])
			indexed.append(doctype)
	return indexed
