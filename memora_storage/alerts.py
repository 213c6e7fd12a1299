"""Tell people: a Notification Log in Desk and an email, each as the user's Notification Settings allow.

Used for disk space (FR-013), CDN uploads that exhausted their retries (FR-017), a CDN that differs
from the local files, and the end of jobs an administrator started. Every email body is a template in
templates/emails/; the Notification Log carries the same body.
"""

import frappe
from frappe import _
from frappe.desk.doctype.notification_log.notification_log import enqueue_create_notification
from frappe.desk.doctype.notification_settings.notification_settings import is_email_notifications_enabled
from frappe.utils import get_url_to_form

TEMPLATE = "memora_storage_alert"  # templates/emails/memora_storage_alert.html: a message and a link


def system_managers() -> list[str]:
	"""Enabled users holding System Manager, Administrator included."""
	users = frappe.get_all(
		"Has Role",
		filters={"role": "System Manager", "parenttype": "User"},
		pluck="parent",
		distinct=True,
	)
	return frappe.get_all(
		"User", filters={"name": ["in", users], "enabled": 1}, pluck="name", order_by="name"
	)


def notify_system_managers(
	subject: str,
	message: str = "",
	document_type: str | None = None,
	document_name: str | None = None,
	template: str = TEMPLATE,
	args: dict | None = None,
) -> list[str]:
	"""Notify every System Manager (problems that need a person); returns the users asked."""
	users = system_managers()
	notify(
		users,
		subject,
		template=template,
		args={"message": message, **(args or {})},
		document_type=document_type,
		document_name=document_name,
	)
	return users


def notify(
	users: list[str],
	subject: str,
	template: str = TEMPLATE,
	args: dict | None = None,
	document_type: str | None = None,
	document_name: str | None = None,
	email: bool = True,
) -> None:
	"""A Notification Log for each user who has notifications on, and one email to those who take them
	by email. Frappe's "Alert" notifications never send an email of their own, so it is sent here."""
	if not users:
		return
	link = get_url_to_form(document_type, document_name) if document_type and document_name else None
	body = frappe.render_template(f"templates/emails/{template}.html", {**(args or {}), "link": link})
	addresses = dict(
		frappe.get_all(
			"User", filters={"name": ["in", users], "enabled": 1}, fields=["name", "email"], as_list=True
		)
	)
	# Frappe's own path: a job that skips users whose Notification Settings turn notifications off.
	enqueue_create_notification(
		[address for address in addresses.values() if address],
		{
			"type": "Alert",
			"subject": subject,
			"email_content": body,
			"document_type": document_type,
			"document_name": document_name,
		},
	)
	recipients = [
		address for user, address in addresses.items() if address and is_email_notifications_enabled(user)
	]
	if not (email and recipients):
		return
	try:
		frappe.sendmail(
			recipients=recipients,
			subject=subject,
			message=body,
			reference_doctype=document_type,
			reference_name=document_name,
			delayed=True,
		)
	except frappe.OutgoingEmailError:
		frappe.log_error(
			title=_("Memora Storage: no outgoing email account for an alert"), message=f"{subject}\n\n{body}"
		)
