"""Disk guard, every minute: one alert when free space falls below the threshold, one
notice when it is back, silence in between.

Writes below the threshold are refused by the store itself (and their Content File rows wait as Pending,
retried every minute), so this job only tells people. Its state lives in a DefaultValue row, not in CDN
Settings: writing a field of the Single would stamp it (an administrator's open form would then fail to
save) and, on a site whose settings were never saved, would leave every other field without its default.
"""

import frappe
from frappe import _

from memora_storage import alerts, content_files, settings
from memora_storage.utils import disk, paths

STATE_KEY = "memora_storage_disk_alert_state"
STATE_PARENT = "__memora_storage"


def check() -> str | None:
	"""Compare free space with CDN Settings' minimum; notify System Managers on a crossing; the event."""
	status = disk.disk_status(paths.content_root(frappe.get_site_path()))
	alert = disk.check_disk_alert(_stored_state(), status, settings.get_settings()["min_free_disk_percent"])
	if alert.event:
		frappe.db.set_default(STATE_KEY, alert.state, parent=STATE_PARENT)
		_notify(alert)
	frappe.db.commit()  # the state and the notices together: a notice that failed is sent next minute
	return alert.event


def _stored_state() -> str | None:
	"""The state the last check left, read under a row lock so two checks cannot both announce."""
	rows = frappe.db.sql(
		"select defvalue from `tabDefaultValue` where parent=%s and defkey=%s for update",
		(STATE_PARENT, STATE_KEY),
	)
	return rows[0][0] if rows else None


def _notify(alert: disk.DiskAlert) -> None:
	figures = {
		"free": f"{alert.status.free_percent:.1f}",
		"min": f"{alert.min_free_percent:g}",
		"path": alert.status.path,
		"free_gb": f"{alert.status.free / 1e9:.1f}",
		"total_gb": f"{alert.status.total / 1e9:.1f}",
	}
	if alert.event == disk.EVENT_LOW:
		subject = _("Memora Storage: disk space low, {0}% free").format(figures["free"])
		template = "memora_storage_disk_low"
	else:
		figures["waiting"] = content_files.count_pending_writes()
		subject = _("Memora Storage: disk space recovered, {0}% free").format(figures["free"])
		template = "memora_storage_disk_recovered"
	alerts.notify_system_managers(
		subject, template=template, args=figures, document_type="CDN Settings", document_name="CDN Settings"
	)


def disk_free() -> dict:
	"""Number card: free space of the disk holding the content now; opens CDN Settings."""
	status = disk.disk_status(paths.content_root(frappe.get_site_path()))
	return {"value": round(status.free_percent, 1), "fieldtype": "Percent", "route": ["Form", "CDN Settings"]}
