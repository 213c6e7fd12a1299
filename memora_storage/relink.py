"""Re-linking: after a change of where URLs point, every link in every file follows, without a render.

A file's links depend only on the URL base and each listed child's delivery (on the CDN or not, and
its version), so a relink reads each file that lists others, rewrites its links in place
(`utils/links.py`) and writes it back in batches whose durability work is grouped
(`ContentStore.rewrite_many`). Children are re-linked before the files listing them, level by
level up to the manifests, so a parent's link to a child names the child's delivery after its own
relink: a file whose bytes come back to the version the CDN holds is served from it again at once,
and only files whose bytes then differ from the CDN's copy are queued for upload.
"""

from collections import defaultdict
from collections.abc import Iterable

import frappe
from frappe import _
from frappe.utils import now_datetime

from memora_storage import content_files, delivery_hash, jobs, progress, settings, urls
from memora_storage.utils import links
from memora_storage.utils.resolver import UrlSettings
from memora_storage.utils.store import ContentStore

BATCH_SIZE = 512
BASES_KEY = "memora_storage_link_bases"  # every URL base files may still carry (a DefaultValue row)
BASES_PARENT = "__memora_storage"
MAX_BASES = 32


def relink() -> dict[str, int]:
	"""Queued (`jobs.request_relink`): rewrite every link as the settings and the probe say now.

	A change of where URLs point during the run stops it and queues the next, which starts from the
	files as this one left them.
	"""
	jobs.started(jobs.RELINK)
	snapshot = settings.url_settings()
	bases = links.Bases(remember_bases(snapshot))
	rows = content_files.relinkable()
	by_path = {row.path: row for row in rows}
	listed: dict[str, list[str]] = defaultdict(list)
	for row in rows:
		if row.parent_path in by_path:
			listed[row.parent_path].append(row.path)
	states = dict(zip(by_path, urls.states_of(list(by_path)), strict=True))
	counts = {"files": len(listed), "rewritten": 0, "unchanged": 0, "failed": 0, "queued": 0}
	store = settings.content_store()
	user = frappe.session.user if "System Manager" in frappe.get_roles() else None
	with progress.Task(_("Re-linking content files"), user=user, notification_log=False) as task:
		done = 0
		for level in _levels(listed, by_path):
			for start in range(0, len(level), BATCH_SIZE):
				if settings.url_settings() != snapshot:
					jobs.request_relink()
					task.done(_("Stopped: where URLs point changed, and a new relink follows."), "orange")
					return counts
				batch = level[start : start + BATCH_SIZE]
				_relink_batch(store, batch, snapshot, bases, by_path, states, counts)
				done += len(batch)
				task.progress(done, len(listed), _("Files re-linked: {0} of {1}").format(done, len(listed)))
		task.done(
			_("{0} files re-linked, {1} queued for the CDN, {2} not written (retried every minute).").format(
				counts["rewritten"], counts["queued"], counts["failed"]
			),
			"orange" if counts["failed"] else "green",
		)
	if snapshot.uses_cdn and counts["queued"]:
		jobs.request_drain()
	return counts


def _levels(listed: dict[str, list[str]], by_path: dict) -> list[list[str]]:
	"""The files that list others, deepest first: a file's children are always in an earlier level."""
	depth: dict[str, int] = {}

	def depth_of(path: str) -> int:
		seen = []
		while path not in depth:
			seen.append(path)
			parent = by_path[path].parent_path
			if parent not in by_path or parent in seen:  # a top file, or a loop no render could make
				depth[path] = 0
				seen.pop()
				break
			path = parent
		for child in reversed(seen):
			depth[child] = depth[by_path[child].parent_path] + 1
		return depth[seen[0]] if seen else depth[path]

	levels: dict[int, list[str]] = defaultdict(list)
	for path in sorted(listed):
		levels[depth_of(path)].append(path)
	return [levels[d] for d in sorted(levels, reverse=True)]


def _relink_batch(
	store: ContentStore,
	batch: list[str],
	snapshot: UrlSettings,
	bases: links.Bases,
	by_path: dict,
	states: dict[str, delivery_hash.Delivery | None],
	counts: dict[str, int],
) -> None:

	def url_for(path: str) -> str:
		return urls.link_url(path, snapshot, states.get(path))

	def transform(path: str, data: bytes) -> bytes | None:
		return links.rewrite(data, bases, url_for)

	def before_commit(results: list) -> None:
		# A file leaves the CDN before its new bytes replace the ones the CDN holds.
		delivery_hash.mark(
			{
				r.path: delivery_hash.state(False, r.sha256)
				for r in results
				if r.sha256 != by_path[r.path].synced_sha256
			}
		)

	results = store.rewrite_many(batch, transform, before_commit=before_commit)
	now = now_datetime()
	updates, landed = [], {}
	for result in results:
		if result.error is not None:
			counts["failed"] += 1
			content_files.record_failure(result.path, None, None, result.error)
			continue
		if not result.changed:
			counts["unchanged"] += 1
			continue
		counts["rewritten"] += 1
		row = by_path[result.path]
		on_cdn = bool(row.synced_sha256) and result.sha256 == row.synced_sha256
		counts["queued"] += not on_cdn
		states[result.path] = delivery_hash.Delivery(on_cdn, result.sha256)
		if on_cdn:
			landed[result.path] = delivery_hash.state(True, result.sha256)
		updates.append(
			{
				"name": row.name,
				"old": result.old_sha256,
				"sha256": result.sha256,
				"size": result.size,
				"now": now,
			}
		)
		row.sha256 = result.sha256
	content_files.record_relinked(updates)
	frappe.db.commit()
	delivery_hash.mark(landed)  # back on the CDN: the bytes are the very version it holds


def remember_bases(snapshot: UrlSettings | None = None, more: Iterable[str] = ()) -> tuple[str, ...]:
	"""The URL bases links in files may carry: every base URLs pointed to since the files were written."""
	current = []
	if snapshot:
		current = [
			snapshot.local_base_url,
			*([snapshot.cdn_base_url.rstrip("/")] if snapshot.cdn_base_url else []),
		]
	stored = frappe.db.get_default(BASES_KEY, parent=BASES_PARENT)
	known = [*current, *more, *(frappe.parse_json(stored) if stored else [])]
	bases = list(dict.fromkeys(base for base in known if base))[:MAX_BASES]
	value = frappe.as_json(bases, indent=None)
	if value != stored:
		# Written only when a base is new: a relink and a settings save writing the same row at
		# once deadlock on its delete-then-insert (seen on a site).
		frappe.db.set_default(BASES_KEY, value, parent=BASES_PARENT)
	return tuple(bases)
