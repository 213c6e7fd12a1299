"""Progress bars and end notices for the long jobs that administrators start from Desk.

Both travel through Frappe's realtime server to the user's own room, which every Desk tab of theirs
joins as it connects, so they reach the browser whichever request started the job: `progress`
events become Desk's progress dialog (as `frappe.publish_progress` sends them), `msgprint` events an
alert. A job that the scheduler runs has nobody to tell and reports nothing.
"""

import time
from collections.abc import Callable

import frappe
from frappe import _
from frappe.utils import escape_html, quoted, slug

from memora_storage import alerts

INTERVAL_S = 0.5  # at most two progress events a second, however many items a job walks


class Task:
	"""The progress and outcome of one job, for `user` (nobody when None).

	The end also leaves a Notification Log unless `notification_log` is False. As a context manager it
	tells the user when the job fails, then lets the error propagate (Frappe still logs the job failed).
	"""

	def __init__(self, title: str, user: str | None, notification_log: bool = True):
		self.title = title
		self.user = user
		self.notification_log = notification_log
		self._last = 0.0

	def progress(self, done: int, total: int, description: str | None = None) -> None:
		"""How far the job is, at most every INTERVAL_S; reaching the end is for `done`, which closes the dialog."""
		now = time.monotonic()
		if not self.user or done >= total or now - self._last < INTERVAL_S:
			return
		self._last = now
		frappe.publish_realtime(
			"progress",
			{"percent": 100.0 * done / total, "title": self.title, "description": description},
			user=self.user,
		)

	def counter(self, description: str, steps_after: int = 0) -> Callable[[int, int], None]:
		"""An `on_progress(done, total)` for work counted in items: `description` formats done and total;
		`steps_after` steps follow the count, so its end does not close the dialog."""
		return lambda done, total: self.progress(done, total + steps_after, description.format(done, total))

	def done(
		self, message: str, indicator: str = "green", doctype: str | None = None, name: str | None = None
	) -> None:
		"""Close the progress dialog and alert now, linking the result; the Notification Log outlives the page."""
		if not self.user:
			return
		if self._last:
			frappe.publish_realtime("progress", {"percent": 100, "title": self.title}, user=self.user)
		text = escape_html(message)
		if doctype and name:
			# A path, not get_url_to_form's absolute URL: a worker does not know the host the user is on.
			text += f' <a href="/app/{quoted(slug(doctype))}/{quoted(name)}">{escape_html(name)}</a>'
		frappe.publish_realtime(
			"msgprint", {"message": text, "alert": 1, "indicator": indicator}, user=self.user
		)
		if self.notification_log:
			alerts.notify([self.user], message, document_type=doctype, document_name=name, email=False)

	def report_done(self, report: "frappe.model.document.Document") -> None:
		"""Close with a Content Health Report's summary, orange unless it found the content healthy."""
		self.done(
			report.summary,
			indicator="green" if report.status == "Healthy" else "orange",
			doctype=report.doctype,
			name=report.name,
		)

	def __enter__(self) -> "Task":
		return self

	def __exit__(self, exc_type, exc, traceback) -> bool:
		if exc is not None:
			self.done(_("{0} failed: {1}. See Error Log.").format(self.title, exc), indicator="red")
		return False
