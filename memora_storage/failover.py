"""Automatic CDN failover: probes of what clients use decide, with hysteresis, where URLs point.

A probe fetches the canary object through the CDN Base URL (`utils/edge_probe.py`); an upload that
could not reach the bucket (unreachable, timeout) counts as a failed probe too. After
`failover_after` failed probes in a row the CDN is taken for down: every URL points to this server,
as if Local Fallback Mode were on, the files are re-linked, and System Managers are told once.
After `recover_after` healthy probes in a row it is back, the same way. The state is stored in the
CDN Health single (the record) and published in the delivery hash beside the settings snapshot,
so every web and worker process follows it on its next call. An administrator's Local Fallback
Mode and Enable CDN off always win: the resolver applies them before this state.

Probes run in the per-scheduler-tick job `tick` (and between a drain's passes), each
only once `probe_interval` seconds have passed since the last: a minute by default, since Frappe's
scheduler ticks every 60 s; `scheduler_tick_interval` in common_site_config.json lowers that.
"""

import frappe
import redis
from frappe import _
from frappe.utils import add_to_date, format_datetime, now_datetime

from memora_storage import after_commit, alerts, bucket, content_files, delivery_hash, jobs, settings
from memora_storage.utils import edge_probe
from memora_storage.utils.s3 import CdnError, CdnErrorKind

HEALTH = settings.HEALTH
PROBE = "CDN Probe"
HEALTHY = "Healthy"
DOWN = settings.DOWN
PROBE_SLOT = "memora_storage:probe-slot"  # held for one interval by the process that probes
CANARY_PUT = "memora_storage:canary-put"  # CDN Base URLs the canary was uploaded for
SLOT_SHARE = 0.9  # of the interval: a scheduler tick a little early still finds the slot free
# The upload failures that say the bucket cannot be reached, as a failed probe of the edge does.
CONNECTIVITY = (CdnErrorKind.UNREACHABLE, CdnErrorKind.TIMEOUT)


def tick() -> str | None:
	"""Probe the CDN if it is enabled and an interval has passed since the last probe; the outcome."""
	values = settings.get_settings()
	if not (values["enable_cdn"] and values["cdn_base_url"]):
		return None
	interval_ms = values.get("probe_interval", settings.DEFAULT_PROBE_INTERVAL) * 1000
	slot_ms = int(interval_ms * SLOT_SHARE)
	if not redis.Redis.set(frappe.cache, frappe.cache.make_key(PROBE_SLOT), 1, nx=True, px=slot_ms):
		return None
	return probe(values["cdn_base_url"])


def probe(base: str) -> str:
	"""Fetch the canary through the CDN Base URL `base` and record the outcome; an edge that answers
	403/404 is given the canary once (a new bucket, a prefix changed) and asked again.

	The canary is uploaded before the first probe of a base: an edge that caches 404s must never
	see one it would keep answering."""
	key = frappe.cache.make_key(CANARY_PUT)
	if not redis.Redis.hexists(frappe.cache, key, base) and _upload_canary():
		redis.Redis.hset(frappe.cache, key, base, 1)
	result = edge_probe.probe(base)
	if not result.ok and result.missing and _upload_canary():
		result = edge_probe.probe(base)
	return record(
		result.ok, "Probe", error=result.error, latency_ms=result.latency_ms, http_status=result.status
	)


def _upload_canary() -> bool:
	cdn = bucket.get_bucket()
	if not cdn:
		return False
	try:
		cdn.put_canary(edge_probe.CANARY_PATH, edge_probe.CANARY_BYTES, edge_probe.CANARY_CACHE_CONTROL)
	except CdnError:
		return False
	return True


def record_upload_failure(error: CdnError) -> str | None:
	"""An upload that could not reach the bucket is a failed probe; other failures say nothing of health."""
	if error.kind not in CONNECTIVITY:
		return None
	return record(False, "Upload", error=str(error))


def record(
	ok: bool, source: str, error: str = "", latency_ms: float = 0.0, http_status: int | None = None
) -> str:
	"""Store one probe result and move the state as the thresholds allow; returns the outcome.

	Serialised on a row lock held until the commit, so two processes recording at once cannot both
	count the same streak or both announce a change.
	"""
	frappe.db.commit()  # what follows reads committed state, never an old snapshot of the caller's
	frappe.db.sql("select name from `tabDocType` where name=%s for update", HEALTH)
	values = settings.get_settings()
	health = settings.health_record()
	now = now_datetime()
	frappe.get_doc(
		{
			"doctype": PROBE,
			"probed_at": now,
			"outcome": HEALTHY if ok else "Failed",
			"source": source,
			"latency_ms": latency_ms,
			"http_status": http_status or 0,
			"error": (error or "")[:1000],
		}
	).insert(ignore_permissions=True)
	state = health.get("state") or HEALTHY
	failed = 0 if ok else (health.get("failed_probes") or 0) + 1
	healthy = (health.get("healthy_probes") or 0) + 1 if ok else 0
	changed = None
	if values.get("auto_failover", True):
		if state == HEALTHY and failed >= values.get("failover_after", settings.DEFAULT_FAILOVER_AFTER):
			state, changed = DOWN, DOWN
		elif state == DOWN and healthy >= values.get("recover_after", settings.DEFAULT_RECOVER_AFTER):
			state, changed = HEALTHY, HEALTHY
	update = {
		"state": state,
		"failed_probes": failed,
		"healthy_probes": healthy,
		"last_probe_at": now,
		"failing_since": None if ok else (health.get("failing_since") or now),
		"last_error": None if ok else (error or "")[:1000],
	}
	if changed:
		update["changed_at"] = now
	if changed == HEALTHY:
		content_files.resume_waiting(now)
	frappe.db.set_single_value(HEALTH, update)
	frappe.db.commit()
	if changed:
		_publish(state == DOWN, now)
		_announce(changed, health, values, error)
	return HEALTHY if ok else "Failed"


def reset(reason: str) -> None:
	"""Forget the verdict (automatic failover turned off, the CDN or its URL changed): the CDN is
	judged afresh from the next probe on, and URLs follow the settings alone at once."""
	frappe.db.sql("select name from `tabDocType` where name=%s for update", HEALTH)
	was_down = frappe.db.get_single_value(HEALTH, "state", cache=False) == DOWN
	now = now_datetime()
	frappe.db.set_single_value(
		HEALTH,
		{"state": HEALTHY, "failed_probes": 0, "healthy_probes": 0, "failing_since": None, "changed_at": now},
	)
	redis.Redis.delete(frappe.cache, frappe.cache.make_key(PROBE_SLOT))
	after_commit.once("publish-verdict", lambda: _publish(False, now))
	if was_down:
		after_commit.once("relink", jobs.request_relink)
		frappe.log_error(title=_("Memora Storage: CDN failover cleared"), message=reason)


def _publish(down: bool, since) -> None:
	delivery_hash.publish_failover({"down": down, "since": str(since)})


def _announce(changed: str, before: dict, values: dict, error: str) -> None:
	"""Re-link every file to where URLs now point, then tell System Managers (once per change)."""
	administrator_wins = values["local_fallback_mode"]
	if not administrator_wins:
		jobs.request_relink()
	if changed == DOWN:
		subject = _("Memora Storage: the CDN is down, content is served from this server")
		template = "memora_storage_cdn_down"
	else:
		subject = _("Memora Storage: the CDN is back, content is served from it again")
		template = "memora_storage_cdn_recovered"
		if administrator_wins:
			subject = _("Memora Storage: the CDN is back; Local Fallback Mode keeps content on this server")
	alerts.notify_system_managers(
		subject,
		template=template,
		args={
			"base": values["cdn_base_url"],
			"error": error,
			"since": format_datetime(
				before.get("failing_since") or before.get("changed_at") or now_datetime()
			),
			"failover_after": values.get("failover_after", settings.DEFAULT_FAILOVER_AFTER),
			"recover_after": values.get("recover_after", settings.DEFAULT_RECOVER_AFTER),
			"administrator_wins": administrator_wins,
		},
		document_type="CDN Settings",
		document_name="CDN Settings",
	)


def describe(values: dict) -> str:
	"""Where URLs point now and who decided, for CDN Settings' read-only Delivery Now."""
	health = settings.health_record()
	failing = health.get("failed_probes") or 0
	if not values["enable_cdn"]:
		return _("This server: Enable CDN is off (administrator).")
	if values["local_fallback_mode"]:
		return _("This server: Local Fallback Mode is on (administrator).")
	if values.get("auto_failover", True) and health.get("state") == DOWN:
		return _(
			"This server since {0}: the CDN failed {1} probes in a row (probe). {2} healthy so far."
		).format(
			format_datetime(health.get("changed_at")),
			values.get("failover_after"),
			health.get("healthy_probes") or 0,
		)
	if failing and not values.get("auto_failover", True):
		return _(
			"CDN, failing since {0}: {1} failed probes in a row. Switch to Local Automatically is off, so URLs stay on the CDN."
		).format(format_datetime(health.get("failing_since")), failing)
	if failing:
		return _("CDN, failing since {0}: {1} of {2} failed probes before switching to this server.").format(
			format_datetime(health.get("failing_since")), failing, values.get("failover_after")
		)
	last = latest_probes(1)
	if last and last[0].outcome != HEALTHY:
		# A settings save restarts the count: the probe before it failed, none has failed since.
		return _("CDN (the last probe, {0}, failed; the count restarted when the settings changed).").format(
			format_datetime(last[0].probed_at)
		)
	if last:
		return _("CDN, healthy (last probe {0}).").format(format_datetime(last[0].probed_at))
	return _("CDN (not probed yet).")


def latest_probes(limit: int = 10) -> list[dict]:
	return frappe.get_all(
		PROBE,
		fields=["probed_at", "outcome", "source", "latency_ms", "http_status", "error"],
		order_by="probed_at desc",
		limit=limit,
	)


def failed_probes_card() -> dict:
	"""Number card: failed probes in the last hour; opens the CDN Probe list."""
	since = add_to_date(now_datetime(), hours=-1)
	return {
		"value": frappe.db.count(PROBE, {"outcome": "Failed", "probed_at": [">=", since]}),
		"fieldtype": "Int",
		"route": ["List", PROBE, "List"],
		"route_options": {"outcome": "Failed"},
	}
