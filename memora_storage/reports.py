"""Content Health Report documents: one per scan or CDN verification, readable however long the lists."""

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

import frappe
from frappe.utils import now_datetime

DOCTYPE = "Content Health Report"
MAX_LISTED = 1000  # rows in the form's table; the attached JSON holds every problem


@dataclass(frozen=True)
class Problem:
	problem: str  # one of the Content Health Issue "problem" options
	path: str
	reference_doctype: str | None = None
	reference_name: str | None = None
	detail: str | None = None


def save_report(scope: str, problems: Iterable[Problem], summary: str, **values) -> "frappe.Document":
	"""Insert a report with its counts and problems; over MAX_LISTED problems go to an attached JSON file."""
	problems = list(problems)
	report = frappe.get_doc(
		{
			"doctype": DOCTYPE,
			"scope": scope,
			"checked_at": values.pop("checked_at", None) or now_datetime(),
			"status": values.pop("status", None) or ("Problems Found" if problems else "Healthy"),
			"summary": summary,
			"issues_truncated": len(problems) > MAX_LISTED,
			# Copies: Frappe adds `doctype` to the dicts of child rows it is given.
			"issues": [dataclasses.asdict(problem) for problem in problems[:MAX_LISTED]],
			**values,
		}
	).insert(ignore_permissions=True)
	if len(problems) > MAX_LISTED:
		file = frappe.get_doc(
			{
				"doctype": "File",
				"file_name": f"{report.name}-problems.json",
				"attached_to_doctype": DOCTYPE,
				"attached_to_name": report.name,
				"attached_to_field": "details_file",
				"is_private": 1,
				"content": json.dumps(
					[dataclasses.asdict(problem) for problem in problems], ensure_ascii=False, indent=1
				),
			}
		).insert(ignore_permissions=True)
		report.db_set("details_file", file.file_url)
	return report


def report_problems(report: "frappe.Document") -> list[Problem]:
	"""Every problem of a report, from the attached JSON when the table was truncated."""
	if report.issues_truncated and report.details_file:
		# This report's own attachment: Frappe gives files of equal content one URL.
		file = frappe.get_doc(
			"File",
			{
				"attached_to_doctype": DOCTYPE,
				"attached_to_name": report.name,
				"attached_to_field": "details_file",
			},
		)
		names = {f.name for f in dataclasses.fields(Problem)}
		# Files written before the copy above also carry the `doctype` Frappe added.
		return [
			Problem(**{k: v for k, v in row.items() if k in names}) for row in json.loads(file.get_content())
		]
	return [
		Problem(row.problem, row.path, row.reference_doctype, row.reference_name, row.detail)
		for row in report.issues
	]
