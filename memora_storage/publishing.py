"""What happens on save: a mapped document's file is rendered and written once its commit has landed.

A save or delete of a mapped document is remembered during the request and carried out once the
database commit has landed: files then always describe committed data, and a delete that a link
check or a rollback undoes leaves the files alone. The save itself is never blocked by the disk:
a write that fails (disk low, permission denied) is logged, marked Pending on its Content File
row, and retried every minute by `retry_pending_writes` until it succeeds.
"""

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.model.utils import is_virtual_doctype

from memora_storage import (
	after_commit,
	content_files,
	delivery_hash,
	jobs,
	json_rows,
	progress,
	published_fields,
	settings,
	urls,
)
from memora_storage.content_map import (
	DEFAULT_SERIALIZER,
	ContentType,
	content_type_of,
	existing_path,
	folder_of,
	get_content_map,
	parent_of,
	parent_path_of,
	path_of,
)
from memora_storage.utils import canonical, links, paths
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.store import ContentStore, FileOperationError


@dataclass
class RenderContext:
	"""One settings snapshot per batch of files, so all their links point the same way."""

	content_map: dict[str, ContentType]
	url_settings: UrlSettings

	def urls(self, paths_: list[str]) -> list[str]:
		"""Links to these paths (`urls.link_url`): the CDN only for those whose current version it
		holds, read in one Redis call, and none while URLs point to this server anyway."""
		states = urls.states_of(paths_) if self.url_settings.uses_cdn else [None] * len(paths_)
		return [
			urls.link_url(path, self.url_settings, state) for path, state in zip(paths_, states, strict=True)
		]

	def is_current(self) -> bool:
		"""False once a settings save changed where URLs point since this snapshot was taken."""
		return settings.url_settings() == self.url_settings

	def children(self, doc: Document) -> dict[str, list[dict]]:
		"""The entries a parent's file lists: each child's name, title and URL."""
		listed = {}
		for child in self.content_map.values():
			if child.parent_doctype != doc.doctype or not child.list_key:
				continue
			meta = frappe.get_meta(child.doctype)
			title_field = meta.title_field if meta.title_field and meta.has_field(meta.title_field) else None
			fields = sorted({"name", *child.path_fields, *([title_field] if title_field else [])})
			rows = _listed_rows(child, meta, fields, doc.name)
			# A child no file can carry is not listed.
			entries = [(row, path) for row in rows if (path := existing_path(child, row))]
			links = self.urls([path for _, path in entries])
			listed[child.list_key] = [
				{"name": row.name, "title": row.get(title_field) if title_field else row.name, "url": url}
				for (row, _), url in zip(entries, links, strict=True)
			]
		return listed


# Field types whose values MariaDB's JSON functions give back as Python's driver does: text or null.
TEXT_TYPES = frozenset(
	("Data", "Link", "Select", "Small Text", "Text", "Long Text", "Read Only", "Dynamic Link")
)


def _listed_rows(child: ContentType, meta, fields: list[str], parent: str) -> list[frappe._dict]:
	"""A parent's children as rows of `fields`, in the content map's order.

	A Subject listing a thousand Units is read as one JSON array built by MariaDB: PyMySQL decodes
	a thousand rows in about 4 ms, json.loads one array in a third of that. Fields of other types
	(dates, numbers) and an order the array cannot take go through `frappe.get_all` as before."""
	order = child.order_by.strip()
	texts = all(name == "name" or _field_type(meta, name) in TEXT_TYPES for name in fields)
	if not (texts and child.sort_fields is not None):
		return frappe.get_all(
			child.doctype, filters={child.parent_field: parent}, fields=fields, order_by=order
		)
	listed = json_rows.rows(child.doctype, fields, child.parent_field, parent, order)
	return [frappe._dict(zip(fields, row, strict=True)) for row in listed]


def _field_type(meta, fieldname: str) -> str | None:
	field = meta.get_field(fieldname)
	return field.fieldtype if field else None


def serialize(doc: Document, ctx: RenderContext) -> dict:
	"""Default serialiser: the fields the content map publishes, the file's identity, and the files it lists.

	`modified` is part of every file: each save then changes the bytes, and the hourly health scan
	judges a file stale by its mtime against the record's `modified` (identical bytes are not rewritten).
	"""
	data = published_fields.values(doc, ctx.content_map[doc.doctype].fields)
	data.update(doctype=doc.doctype, name=doc.name, modified=str(doc.modified))
	data.update(ctx.children(doc))
	return data


def render(doc: Document, ctx: RenderContext) -> bytes:
	"""The exact bytes of a document's file."""
	return canonical.dumps(frappe.get_attr(ctx.content_map[doc.doctype].serializer)(doc, ctx))


def new_context() -> RenderContext:
	return RenderContext(get_content_map(), settings.url_settings())


class Outcome(enum.Enum):
	WRITTEN = "written"
	LEFT_CDN = "left_cdn"  # written, and its new version is not on the CDN: the files listing it follow
	FAILED = "failed"  # logged, and the row marked for a retry


def write_document(doc: Document, ctx: RenderContext, store: ContentStore) -> Outcome:
	"""Render and write one document's file and record it."""
	content_type = ctx.content_map[doc.doctype]
	path = existing_path(content_type, doc)
	if path is None:  # no place on disk yet, or never (a name saves refuse; the health scan names it)
		return Outcome.WRITTEN
	try:
		data = render(doc, ctx)
	except Exception as e:  # a serialiser's bug must not keep the other files of the commit from disk
		content_files.record_render_failure(path, doc.doctype, doc.name, e)
		return Outcome.FAILED
	# Clients are sent to this server before the file changes: the CDN still has the old bytes.
	delivery_hash.mark_local(path, canonical.sha256(data))
	try:
		result = store.write(path, data)
	except FileOperationError as e:
		content_files.record_failure(path, doc.doctype, doc.name, e)
		return Outcome.FAILED
	left_cdn = content_files.record_write(result, doc.doctype, doc.name, parent_path_of(content_type, doc))
	return Outcome.LEFT_CDN if left_cdn else Outcome.WRITTEN


# Document events -------------------------------------------------------------------------------


@dataclass
class _Pending:
	"""What the current transaction will do to files once it commits."""

	renders: dict[tuple[str, str], None] = field(default_factory=dict)
	removals: dict[str, bool] = field(default_factory=dict)  # path -> is a folder


def _pending() -> _Pending:
	pending = getattr(frappe.local, "memora_storage_pending", None)
	if pending is None:
		pending = frappe.local.memora_storage_pending = _Pending()
		after_commit.once("publish", flush, on_rollback=_forget)
	return pending


def _forget() -> None:
	frappe.local.memora_storage_pending = None


def validate(doc: Document, method: str | None = None) -> None:
	"""Refuse a name that cannot become a safe file path before anything is saved."""
	if content_type := content_type_of(doc):
		try:
			path_of(content_type, doc)
		except paths.InvalidPathError as e:
			frappe.throw(
				_("{0} {1} cannot be stored as a content file: {2}").format(
					_(doc.doctype), frappe.bold(doc.name), e
				),
				title=_("Invalid name for content"),
			)


def on_update(doc: Document, method: str | None = None) -> None:
	"""Queue this file and its parent's for writing after commit; a moved document leaves its old path."""
	content_type = content_type_of(doc)
	if not content_type:
		return
	pending = _pending()
	pending.renders[(doc.doctype, doc.name)] = None
	before = doc.get_doc_before_save()
	if before is None or _entry_may_change(content_type, before, doc):
		_queue_parent(pending, content_type, doc)
		if before:
			_queue_parent(pending, content_type, before)
	if before:
		old_path = existing_path(content_type, before)
		if old_path and old_path != path_of(content_type, doc):
			pending.removals[old_path] = False


def on_trash(doc: Document, method: str | None = None) -> None:
	"""Queue removal of the file (or the folder it owns) and a re-render of its parent."""
	content_type = content_type_of(doc)
	if not content_type:
		return
	pending = _pending()
	if path := existing_path(content_type, doc):
		pending.removals[path] = False
	if folder := existing_path(content_type, doc, folder=True):
		pending.removals[folder] = True
	pending.renders.pop((doc.doctype, doc.name), None)
	_queue_parent(pending, content_type, doc)


def after_rename(doc: Document, method: str | None, old: str, new: str, merge: bool = False) -> None:
	"""Move the files: drop the old name's, write the new one's and those of children whose path it names."""
	content_type = content_type_of(doc)
	if not content_type:
		return
	pending = _pending()
	before = frappe._dict(doc.as_dict(), name=old)
	if old_path := existing_path(content_type, before):
		pending.removals[old_path] = False
	if folder := existing_path(content_type, before, folder=True):
		pending.removals[folder] = True
	pending.renders[(doc.doctype, new)] = None
	_queue_parent(pending, content_type, doc)
	for child in get_content_map().values():
		if child.parent_doctype == doc.doctype and child.parent_field in child.path_fields:
			for name in frappe.get_all(child.doctype, filters={child.parent_field: new}, pluck="name"):
				pending.renders[(child.doctype, name)] = None


def _entry_may_change(content_type: ContentType, before: Document, doc: Document) -> bool:
	"""Whether the parent's file may list this document differently after this save.

	The default serialiser lists a child's name, title and URL in the map's order. An edit that keeps
	the parent, the path, the title and the sort fields changes none of them, but the URL when the
	child's new version leaves the CDN, and `write_documents` renders the parents of those anyway.
	So editing a Unit's body does not render a Subject of a thousand Units again. A parent with its
	own serialiser may list anything: it is always rendered."""
	parent_type = get_content_map().get(content_type.parent_doctype)
	if not parent_type or parent_type.serializer != DEFAULT_SERIALIZER:
		return True
	if content_type.sort_fields is None:
		return True
	title_field = frappe.get_meta(doc.doctype).title_field
	fields = {content_type.parent_field, title_field, *content_type.path_fields, *content_type.sort_fields}
	# A save changes neither (a rename is `after_rename`); a form sends `creation` back as text.
	fields -= {None, "name", "creation"}
	return any(before.get(field) != doc.get(field) for field in fields)


def _queue_parent(pending: _Pending, content_type: ContentType, doc) -> None:
	"""The parent's file lists this document, so it is rendered again too."""
	if parent := parent_of(content_type, doc):
		pending.renders[parent] = None


def flush() -> None:
	"""Carry out the committed transaction's file work, then commit the Content File rows it wrote."""
	pending = getattr(frappe.local, "memora_storage_pending", None)
	_forget()
	if not pending:
		return
	try:
		failed = apply(pending.removals, pending.renders)
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=_("Memora Storage: content files not updated"))
		failed = True
	frappe.db.commit()
	if failed:
		# Frappe v15 builds the response before the commit that runs this (frappe/app.py), so a message
		# left in the message log would never reach the user: it goes through the realtime server.
		frappe.msgprint(
			_(
				"Saved. Some content files could not be written yet; they are retried every minute. See Content File and Error Log."
			),
			indicator="orange",
			alert=True,
			realtime=True,
		)


def apply(removals: dict[str, bool], renders: Iterable[tuple[str, str]]) -> bool:
	"""Remove then write files; True if any write failed (already logged and marked Pending)."""
	store = settings.content_store()
	failed = False
	for path, is_folder in removals.items():
		try:
			store.remove_tree(path) if is_folder else store.remove(path)
		except FileOperationError as e:
			content_files.record_failure(path, None, None, e)
			failed = True
			continue
		content_files.record_removal(path, is_folder)
		frappe.db.commit()
	ctx = new_context()
	failed |= write_documents(renders, ctx, store)["failed"] > 0
	return failed


BATCH_SIZE = 512  # files rendered before they are written together, and rows per transaction
DEADLOCK_RETRIES = 3


def write_documents(
	renders: Iterable[tuple[str, str]], ctx: RenderContext, store: ContentStore
) -> dict[str, int]:
	"""Write these documents' files, and again those of every file listing one that left the CDN.

	Deepest level first (Units, then Subjects, then Plans): a parent is rendered once, after every
	child of the call, however many of them changed. The files are rendered into one batch (each
	level read with one query per DocType) and written together once it holds BATCH_SIZE files or
	everything is rendered: one sync for all their temp files (`ContentStore.write_many`), children
	renamed before the files listing them, and one transaction for their rows. A Desk save of a Unit,
	its Subject and the manifest costs one barrier, where each level used to cost its own.

	A file whose new version is local only makes its parent link to it locally, and so up to the
	manifest: whoever follows links from any file then reaches only versions that exist where the
	link points. Which files leave the CDN is told by the delivery hash before they are written (their
	parents then follow: a parent no save asked for has only those links moved, where its file is the
	version the CDN holds, else it is rendered), and by their rows once recorded (a parent the hash did
	not foresee is rendered in another round). A settings save during the renders queues a relink, so the last
	settings win.
	"""
	counts = {"written": 0, "failed": 0}
	levels: dict[int, dict[tuple[str, str], None]] = {}

	def queue(parents: Iterable[tuple[str, str]], below: int) -> None:
		for parent in parents:
			if (parent_depth := _depth(parent[0], ctx)) < below:  # not a loop of the content map
				levels.setdefault(parent_depth, {})[parent] = None

	for key in renders:
		if key[0] in ctx.content_map:
			levels.setdefault(_depth(key[0], ctx), {})[key] = None
	batch = _Batch(requested={key for level in levels.values() for key in level})
	while levels:
		depth = max(levels)
		keys = list(levels.pop(depth))
		for start in range(0, len(keys), BATCH_SIZE):
			queue(_render_into(batch, keys[start : start + BATCH_SIZE], ctx, store, counts), depth)
			if len(batch.files) >= BATCH_SIZE:
				queue(batch.write(store, ctx, counts), depth + 1)
		if not levels and (batch.files or batch.failures):
			queue(batch.write(store, ctx, counts), depth + 1)
	if not ctx.is_current():
		after_commit.once("relink", jobs.request_relink)
	return counts


def _depth(doctype: str, ctx: RenderContext) -> int:
	"""How many files list this DocType's above it (a Unit 2, a Plan 0)."""
	depth, seen = 0, {doctype}
	while (parent := ctx.content_map[doctype].parent_doctype) in ctx.content_map and parent not in seen:
		seen.add(parent)
		doctype = parent
		depth += 1
	return depth


@dataclass
class _Batch:
	"""Files rendered and not written yet, children before the files listing them (the rename order)."""

	files: dict[str, bytes] = field(default_factory=dict)
	owners: dict[str, Document] = field(default_factory=dict)
	failures: list[tuple[str, Document, Exception]] = field(default_factory=list)  # renders that raised
	foreseen: set[str] = field(default_factory=set)  # leaving the CDN, their parents rendered already
	requested: set[tuple[str, str]] = field(default_factory=set)  # asked for: always rendered
	# Parents to follow children that left the CDN: each link to move, from the CDN to here.
	switches: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
	parent_paths: dict[tuple[str, str | None], str | None] = field(default_factory=dict)

	def write(self, store: ContentStore, ctx: RenderContext, counts: dict[str, int]) -> list[tuple[str, str]]:
		"""Write and record the batch; returns the parents of files that left the CDN unforeseen."""
		written, write_failures = [], []
		for result in store.write_many(self.files) if self.files else ():
			doc = self.owners[result.path]
			if isinstance(result, FileOperationError):
				write_failures.append((result.path, doc, result))
				continue
			written.append((result, doc.doctype, doc.name, self._parent_path(doc, ctx)))

		def record() -> set[str]:
			for path, doc, error in self.failures:
				content_files.record_render_failure(path, doc.doctype, doc.name, error)
			for path, doc, error in write_failures:
				content_files.record_failure(path, doc.doctype, doc.name, error)
			return content_files.record_writes(written)

		left = _committed(record)
		counts["failed"] += len(self.failures) + len(write_failures)
		counts["written"] += len(written)
		owners, foreseen = self.owners, self.foreseen
		self.files, self.owners, self.failures, self.foreseen = {}, {}, [], set()
		return [
			parent
			for path in sorted(left - foreseen)
			if (parent := parent_of(ctx.content_map[owners[path].doctype], owners[path]))
		]

	def _parent_path(self, doc: Document, ctx: RenderContext) -> str | None:
		content_type = ctx.content_map[doc.doctype]
		key = (doc.doctype, doc.get(content_type.parent_field) if content_type.parent_field else None)
		if key not in self.parent_paths:
			self.parent_paths[key] = parent_path_of(content_type, doc)
		return self.parent_paths[key]


def _render_into(
	batch: _Batch,
	keys: list[tuple[str, str]],
	ctx: RenderContext,
	store: ContentStore,
	counts: dict[str, int],
) -> list[tuple[str, str]]:
	"""Render these documents into the batch; returns the parents of those leaving the CDN.

	Their paths are marked local at once, before any parent is rendered: clients are sent to this
	server before the files change (the CDN still has the old bytes), and a parent links to them here.
	A parent that is here only to follow such children has just those links moved (`_switched`).
	"""
	found: list[tuple[str, Document]] = []
	for doc in load_documents(keys):
		path = existing_path(ctx.content_map[doc.doctype], doc)
		if path is None:  # no place on disk yet, or never (a name saves refuse; the health scan names it)
			counts["written"] += 1
			continue
		found.append((path, doc))
	states = dict(zip([path for path, _ in found], urls.states_of([path for path, _ in found]), strict=True))
	rendered: dict[str, bytes] = {}
	for path, doc in found:
		changes = batch.switches.pop((doc.doctype, doc.name), None)
		try:
			data = _switched(store, path, doc, changes, states[path], ctx) if changes else None
			rendered[path] = render(doc, ctx) if data is None else data
		except Exception as e:  # a serialiser's bug must not keep the other files of the commit from disk
			batch.failures.append((path, doc, e))
			continue
		batch.owners[path] = doc
	digests = {path: canonical.sha256(data) for path, data in rendered.items()}
	leaving = [
		path
		for path, digest in digests.items()
		if (state := states[path]) is not None and state.on_cdn and state.sha256 != digest
	]
	delivery_hash.mark({path: delivery_hash.state(False, digest) for path, digest in digests.items()})
	batch.files.update(rendered)
	batch.foreseen.update(leaving)
	parents = []
	for path in leaving:
		owner = batch.owners[path]
		if not (parent := parent_of(ctx.content_map[owner.doctype], owner)):
			continue
		parents.append(parent)
		if parent not in batch.requested:
			here = delivery_hash.Delivery(on_cdn=False, sha256=digests[path])
			batch.switches.setdefault(parent, {})[urls.link_url(path, ctx.url_settings, states[path])] = (
				urls.link_url(path, ctx.url_settings, here)
			)
	return parents


def _switched(
	store: ContentStore,
	path: str,
	doc: Document,
	changes: dict[str, str],
	state: delivery_hash.Delivery | None,
	ctx: RenderContext,
) -> bytes | None:
	"""A parent's file with only these links moved, or None for a render to decide.

	Only where the file is the version the CDN holds, so the last render, written and recorded, and
	the default serialiser wrote it: one link of a Subject listing a thousand Units then costs a search,
	not the Subject's query and render (most of a Desk save of a Unit on the CDN)."""
	if state is None or not state.on_cdn or ctx.content_map[doc.doctype].serializer != DEFAULT_SERIALIZER:
		return None
	try:
		data = store.read(path)
	except FileOperationError:
		return None
	if canonical.sha256(data) != state.sha256:
		return None
	return links.switch(data, changes)


def load_documents(keys: list[tuple[str, str]]) -> list[Document]:
	"""The documents that still exist, in order: one query per DocType (and per child table), not
	one per document; a single or virtual DocType, or one with virtual tables, is read one by one."""
	names: dict[str, list[str]] = {}
	for doctype, name in keys:
		names.setdefault(doctype, []).append(name)
	docs: dict[tuple[str, str], Document] = {}
	for doctype, doctype_names in names.items():
		meta = frappe.get_meta(doctype)
		tables = meta.get_table_fields()
		if meta.issingle or meta.is_virtual or any(is_virtual_doctype(df.options) for df in tables):
			for name in doctype_names:
				if frappe.db.exists(doctype, name):
					docs[(doctype, name)] = frappe.get_doc(doctype, name)
			continue
		values = {"names": doctype_names, "doctype": doctype}
		rows = frappe.db.sql(f"select * from `tab{doctype}` where name in %(names)s", values, as_dict=True)
		children: dict[tuple[str, str], list[dict]] = {}
		for df in tables:
			for child in frappe.db.sql(
				f"""select * from `tab{df.options}` where parent in %(names)s and parenttype = %(doctype)s
				and parentfield = %(field)s order by idx asc""",
				{**values, "field": df.fieldname},
				as_dict=True,
			):
				children.setdefault((df.fieldname, child.parent), []).append(child)
		for row in rows:
			row.update({df.fieldname: children.get((df.fieldname, row.name), []) for df in tables})
			docs[(doctype, row.name)] = frappe.get_doc({**row, "doctype": doctype})
	return [docs[key] for key in keys if key in docs]


def _committed(record: Callable[[], set[str]]) -> set[str]:
	"""Run `record` and commit, so each batch locks only its own rows.

	A new row is still locked as a gap before its insert, and InnoDB may then pick this transaction
	as a deadlock's victim: the rows are recorded again (the files are written already) rather than
	leaving files on disk that their rows do not know.
	"""
	attempt = 1
	while True:
		try:
			result = record()
			frappe.db.commit()
			return result
		except frappe.QueryDeadlockError:
			frappe.db.rollback()
			if attempt == DEADLOCK_RETRIES:
				raise
			time.sleep(0.05 * attempt)
			attempt += 1


def write_parents(parent_paths: Iterable[str]) -> int:
	"""Render the files that list children whose new versions just reached the CDN, once each."""
	renders = content_files.written_references(parent_paths)
	if not renders:
		return 0
	return write_documents(renders, new_context(), settings.content_store())["written"]


def write_all(doctypes: Iterable[str] | None = None, batch_size: int = 500) -> dict[str, int]:
	"""Render every mapped document again (after a URL base change, or by hand); returns counts.

	The System Manager whose action queued it (a CDN Settings save, Rebuild All) sees the progress and
	the end; with no Notification Log, as relinks follow every change of where URLs point.
	"""
	ctx = new_context()
	store = settings.content_store()
	counts = {"written": 0, "failed": 0}
	names = {
		doctype: frappe.get_all(doctype, pluck="name", order_by="name asc")
		for doctype in doctypes or ctx.content_map
	}
	total, done = sum(map(len, names.values())), 0
	user = frappe.session.user if "System Manager" in frappe.get_roles() else None
	with progress.Task(_("Rebuilding content files"), user=user, notification_log=False) as task:
		for doctype, doctype_names in names.items():
			for start in range(0, len(doctype_names), batch_size):
				if not ctx.is_current():
					# A save changed where URLs point: a rebuild from the start renders everything with
					# the new settings, so finishing this one would only make the uploads wait longer.
					jobs.request_rebuild()
					task.done(
						_("Stopped: the settings changed, and a new rebuild follows."), indicator="orange"
					)
					return counts
				batch = [(doctype, name) for name in doctype_names[start : start + batch_size]]
				for key, value in write_documents(batch, ctx, store).items():
					counts[key] += value
				done += len(batch)
				task.progress(done, total, _("Documents rendered: {0} of {1}").format(done, total))
		task.done(
			_("{0} content files rebuilt, {1} not written yet (retried every minute).").format(
				counts["written"], counts["failed"]
			),
			indicator="orange" if counts["failed"] else "green",
		)
	return counts


def rebuild_all() -> dict[str, int]:
	"""Queued (`jobs.request_rebuild`): render every content file again from the database."""
	jobs.started(jobs.REBUILD)
	return write_all()


def retry_pending_writes() -> int:
	"""Every minute: finish the file work a full disk or a permission error stopped; returns files done."""
	rows = content_files.pending_writes()
	if not rows:
		return 0
	ctx = new_context()
	store = settings.content_store()
	written = 0
	for row in rows:
		try:
			written += _retry(row, ctx, store)
		except Exception as e:  # one document that cannot be handled must not hold up the others
			content_files.record_render_failure(row.path, row.reference_doctype, row.reference_name, e)
	frappe.db.commit()
	return written


def _retry(row: frappe._dict, ctx: RenderContext, store: ContentStore) -> bool:
	"""Write the row's document again, or finish removing the file (or Plan folder) it no longer has."""
	if row.reference_doctype and frappe.db.exists(row.reference_doctype, row.reference_name):
		doc = frappe.get_doc(row.reference_doctype, row.reference_name)
		return write_document(doc, ctx, store) is not Outcome.FAILED
	is_folder = paths.file_path(store.root, row.path).is_dir()
	# A folder whose document was created again under the same name belongs to it now: keep it.
	if not (is_folder and _folder_owned(row.path, ctx)):
		try:
			store.remove_tree(row.path) if is_folder else store.remove(row.path)
		except FileOperationError as e:
			content_files.record_failure(row.path, None, None, e)
			return False
		content_files.record_removal(row.path, is_folder)
	if is_folder:  # the row only carried the retry: a folder is no content file
		content_files.drop_folder_row(row.name)
	return True


def _folder_owned(path: str, ctx: RenderContext) -> bool:
	name = path.rpartition("/")[2]
	return any(
		folder_of(content_type, name) == path and frappe.db.exists(content_type.doctype, name)
		for content_type in ctx.content_map.values()
	)
