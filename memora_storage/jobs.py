"""Every kind of background job the app queues, and the two ways it queues them.

Requests, for work that must never be dropped (the CDN drain, the relink, the rebuild, the delivery
hash's rebuild): a request sets a flag in Redis and, if the flag was not set yet, queues one job. The
job clears the flag as it starts, before it reads anything, so a request arriving while it runs
queues the next one: at most one job of a kind waits, and none is ever lost to a dedupe of a running
job (RQ's `deduplicate` would drop it). The flag expires, so a job lost with a worker is asked for
again by the per-minute dispatcher.

Once-per-key jobs, for work a second copy of would only repeat (a CDN verification, a health scan, a
report's action): queued with a fixed job id and RQ's `deduplicate`, so none is queued while one of
the same key is queued or running.
"""

from typing import NamedTuple

import frappe
import redis

from memora_storage import settings


class Kind(NamedTuple):
	method: str
	queue: str = "long"
	at_front: bool = False


DRAIN = "drain"
RELINK = "relink"
REBUILD = "rebuild"
DELIVERY_HASH = "delivery-hash"
REQUESTS = {
	DRAIN: Kind("memora_storage.uploads.drain"),
	# Ahead of an upload backlog: until it runs, links point where URLs no longer do.
	RELINK: Kind("memora_storage.relink.relink", at_front=True),
	REBUILD: Kind("memora_storage.publishing.rebuild_all"),
	DELIVERY_HASH: Kind("memora_storage.content_files.rebuild_delivery_hash", queue="short", at_front=True),
}
REQUEST_TTL = 120  # seconds: longer than a job waits in a healthy queue

VERIFY = "verify-cdn"
SCAN = "health-check"
REVIVE = "revive-scheduler"
ONCE = {
	VERIFY: Kind("memora_storage.verification.verify"),
	SCAN: Kind("memora_storage.scans.run"),
	REVIVE: Kind("memora_storage.clock.revive", queue="short"),
}


def _flag(kind: str) -> bytes:
	return frappe.cache.make_key(f"memora_storage:requested:{kind}")


def request(kind: str) -> bool:
	"""Make sure one `kind` job runs after now; True if this call queued it."""
	if not redis.Redis.set(frappe.cache, _flag(kind), 1, nx=True, ex=REQUEST_TTL):
		return False
	job = REQUESTS[kind]
	try:
		frappe.enqueue(job.method, queue=job.queue, at_front=job.at_front)
	except Exception:
		redis.Redis.delete(frappe.cache, _flag(kind))
		raise
	return True


def request_drain() -> bool:
	"""Upload and delete what is due on the CDN; a no-op while delivery is local (the CDN off, in
	fallback, or down): rows then wait as Pending and go once it serves again."""
	return settings.url_settings().uses_cdn and request(DRAIN)


def request_relink() -> bool:
	"""Re-link every file as the settings and the probe now say."""
	return request(RELINK)


def request_rebuild() -> bool:
	"""Render every file again from the database (what files publish changed, Rebuild All)."""
	return request(REBUILD)


def started(kind: str) -> None:
	"""Called first by the job: later requests queue another run."""
	redis.Redis.delete(frappe.cache, _flag(kind))


def is_requested(kind: str) -> bool:
	return bool(redis.Redis.exists(frappe.cache, _flag(kind)))


def job_id(kind: str, key: str = "") -> str:
	"""The fixed id of a once-per-key job on this site."""
	return f"memora_storage:{kind}:{frappe.local.site}" + (f":{key}" if key else "")


def enqueue_once(kind: str, timeout: int | None = None, **kwargs) -> bool:
	"""Queue a `kind` job unless one is queued or running; False when one is."""
	job = ONCE[kind]
	queued = frappe.enqueue(
		job.method, queue=job.queue, timeout=timeout, job_id=job_id(kind), deduplicate=True, **kwargs
	)
	return queued is not None


def enqueue_doc_once(doc: "frappe.model.document.Document", method: str) -> bool:
	"""Run a document's `method` on the long queue, once at a time per document; False when it runs."""
	queued = frappe.enqueue_doc(
		doc.doctype,
		doc.name,
		method,
		queue="long",
		timeout=None,  # the long queue's
		job_id=job_id(method, doc.name),
		deduplicate=True,
	)
	return queued is not None
