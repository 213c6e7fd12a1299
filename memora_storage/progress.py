"""Progress bars and end notices for the long jobs that administrators start from Desk.

Both travel through Frappe's realtime server, so they reach the browser whichever request started
the job: `progress` events become Desk's progress dialog (as `frappe.publish_progress` sends them),
`msgprint` events an alert. A job that the scheduler runs has nobody to tell and reports nothing.
"""

import time

import frappe
from frappe import _
from frappe.realtime import get_doc_room
from frappe.utils import escape_html, quoted, slug

from memora_storage import alerts

INTERVAL_S = 0.5  # at most two progress events a second, however many items a job walks


class Task:
	"""The progress and outcome of one job, for `user`, or for whoever has the document `doctype`/`name` open.

	As a context manager it tells them when the job fails, then lets the error propagate (the job is
	still marked failed and logged by Frappe).
	"""

	def __init__(
		self, title: str, user: str | None = None, doctype: str | None = None, name: str | None = None
	):
		self.title = title
		self.user = user
		self.doctype, self.name = doctype, name
		self._last = 0.0

	@property
	def silent(self) -> bool:
		return not (self.user or (self.doctype and self.name))

	def progress(self, done: int, total: int, description: str | None = None) -> None:
		"""How far the job is, at most every INTERVAL_S; reaching the end is for `done`, which closes the dialog."""
		now = time.monotonic()
		if self.silent or done >= total or now - self._last < INTERVAL_S:
			return
		self._last = now
		self._publish(
			"progress", {"percent": 100.0 * done / total, "title": self.title, "description": description}
		)

	def done(
		self, message: str, indicator: str = "green", doctype: str | None = None, name: str | None = None
	) -> None:
		"""Close the progress dialog, alert now with a link to the result; a user also gets a Notification
		Log, which outlives the page."""
		if self.silent:
			return
		if self._last:
			self._publish("progress", {"percent": 100, "title": self.title})
		text = escape_html(message)
		if doctype and name:
			# A path, not get_url_to_form's absolute URL: a worker does not know the host the user is on.
			text += f' <a href="/app/{quoted(slug(doctype))}/{quoted(name)}">{escape_html(name)}</a>'
		self._publish("msgprint", {"message": text, "alert": 1, "indicator": indicator})
		if self.user:
			alerts.notify([self.user], message, document_type=doctype, document_name=name, email=False)

	def _publish(self, event: str, message: dict) -> None:
		if self.user:
			frappe.publish_realtime(event, message, user=self.user)
		else:
			frappe.publish_realtime(event, message, room=get_doc_room(self.doctype, self.name))

	def __enter__(self) -> "Task":
		return self

	def __exit__(self, exc_type, exc, traceback) -> bool:
		if exc is not None:
			self.done(_("{0} failed: {1}. See Error Log.").format(self.title, exc), indicator="red")
		return False
