"""Work that runs once per transaction, after its commit has landed, and never after a rollback.

Queued work must see what the transaction wrote (a job started before the commit would read the old
rows), and a transaction that asks for the same thing a thousand times (a drain, for each row it
writes) must ask once.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import frappe


def _queued() -> set[str]:
	if (keys := getattr(frappe.local, "memora_after_commit", None)) is None:
		keys = frappe.local.memora_after_commit = set()
	return keys


def once(key: str, callback: Callable[[], object], on_rollback: Callable[[], object] | None = None) -> bool:
	"""Run `callback` after this transaction commits, once however often asked; `on_rollback` if it is
	rolled back instead. False when `key` is queued already (or held by `suppressed`)."""
	keys = _queued()
	if key in keys:
		return False
	keys.add(key)

	def committed() -> None:
		keys.discard(key)
		callback()

	def rolled_back() -> None:
		keys.discard(key)
		if on_rollback:
			on_rollback()

	frappe.db.after_commit.add(committed)
	frappe.db.after_rollback.add(rolled_back)
	return True


@contextmanager
def suppressed(key: str) -> Iterator[None]:
	"""Inside the block, `once(key, ...)` queues nothing: the caller does that work itself."""
	keys = _queued()
	held = key not in keys
	keys.add(key)
	try:
		yield
	finally:
		if held:
			keys.discard(key)
