"""Tell every System Manager: a Notification Log in Desk and an email, for problems that need a person.

Used for disk space (FR-013) and for CDN uploads that exhausted their retries (FR-017).
"""

import frappe
from frappe import _
from frappe.utils import get_url_to_form


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
	message: str,
	document_type: str | None = None,
	document_name: str | None = None,
) -> list[str]:
	"""Create a Notification Log for each System Manager and queue one email to them; returns the users."""
	users = system_managers()
	for user in users:
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"subject": subject,
				"email_content": message,
				"document_type": document_type,
				"document_name": document_name,
			}
		).insert(ignore_permissions=True)

	recipients = [email for email in frappe.get_all("User", {"name": ["in", users]}, pluck="email") if email]
	if recipients:
		link = get_url_to_form(document_type, document_name) if document_type and document_name else None
		try:
			frappe.sendmail(
				recipients=recipients,
				subject=subject,
				message=message + (f'<p><a href="{link}">{_("Open in Desk")}</a></p>' if link else ""),
				reference_doctype=document_type,
				reference_name=document_name,
				delayed=True,
			)
		except frappe.OutgoingEmailError:
			frappe.log_error(
				title=_("Memora Storage: no outgoing email account for an alert"),
				message=f"{subject}\n\n{message}",
			)
	return users
