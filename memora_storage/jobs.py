"""Requests for the site's background work that must never be dropped: the CDN drain and the relink.

A request sets a flag in Redis and, if the flag was not set yet, queues one job. The job clears the
flag as it starts, before it reads anything, so a request arriving while it runs queues the next
one: at most one job of a kind waits, and none is ever lost to a dedupe of a running job (RQ's
`deduplicate` would drop it). The flag expires, so a job lost with a worker is asked for again by
the per-minute dispatcher.
"""

import frappe
import redis

DRAIN = "drain"
RELINK = "relink"
REBUILD = "rebuild"
_METHODS = {
	DRAIN: "memora_storage.tasks.drain_cdn",
	RELINK: "memora_storage.tasks.relink_all",
	REBUILD: "memora_storage.tasks.rebuild_all",
}
REQUEST_TTL = 120  # seconds: longer than a job waits in a healthy queue


def _flag(kind: str) -> bytes:
	return frappe.cache.make_key(f"memora_storage:requested:{kind}")


def request(kind: str, at_front: bool = False) -> bool:
	"""Make sure one `kind` job runs after now; True if this call queued it."""
	if not redis.Redis.set(frappe.cache, _flag(kind), 1, nx=True, ex=REQUEST_TTL):
		return False
	try:
		frappe.enqueue(_METHODS[kind], queue="long", at_front=at_front)
	except Exception:
		redis.Redis.delete(frappe.cache, _flag(kind))
		raise
	return True


def request_drain() -> bool:
	"""Upload and delete what is due on the CDN; a no-op while delivery is local (the CDN off, in
	fallback, or down): rows then wait as Pending and go once it serves again."""
	from memora_storage import settings

	return settings.url_settings().uses_cdn and request(DRAIN)


def request_relink() -> bool:
	"""Re-link every file as the settings and the probe now say; ahead of an upload backlog in the queue."""
	return request(RELINK, at_front=True)


def request_rebuild() -> bool:
	"""Render every file again from the database (what files publish changed, Rebuild All)."""
	return request(REBUILD)


def started(kind: str) -> None:
	"""Called first by the job: later requests queue another run."""
	redis.Redis.delete(frappe.cache, _flag(kind))


def is_requested(kind: str) -> bool:
	return bool(redis.Redis.exists(frappe.cache, _flag(kind)))
