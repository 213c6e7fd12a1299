"""A first look: sample Plans, Subjects and Units, then the files and URLs they produced.

    bench --site SITE execute memora_storage.demo.run

Plan, Subject and Unit belong to the content app; where they are missing (a bare site, the test
site), `ensure_content_doctypes` creates minimal ones so the storage flow can be seen end to end.
"""

import frappe

from memora_storage import settings
from memora_storage.api import get_content_url
from memora_storage.content_map import get_content_map, index_parent_fields, path_of

CONTENT_DOCTYPES = {
	"Plan": [],
	"Subject": [{"fieldname": "plan", "label": "Plan", "fieldtype": "Link", "options": "Plan", "reqd": 1}],
	"Unit": [
		{"fieldname": "subject", "label": "Subject", "fieldtype": "Link", "options": "Subject", "reqd": 1},
		{"fieldname": "body", "label": "Body", "fieldtype": "Long Text"},
	],
}

SAMPLE = {
	"demo-plan-sciences": {
		"title": "Sciences, Grade 7",
		"subjects": {"demo-physics": ["demo-forces", "demo-energy"], "demo-biology": ["demo-cells"]},
	},
	"خطة-اللغة-العربية": {
		"title": "اللغة العربية - الصف السابع",
		"subjects": {"النحو": ["الجملة الاسمية", "الجملة الفعلية"]},
	},
}


def ensure_content_doctypes(module: str = "Memora Storage") -> list[str]:
	"""Create minimal Plan, Subject and Unit DocTypes (named by the user, titled) if they are missing;
	`module` "Custom" on a site without this app (a benchmark's bare site)."""
	created = []
	for doctype, extra_fields in CONTENT_DOCTYPES.items():
		if frappe.db.exists("DocType", doctype):
			continue
		frappe.get_doc(
			{
				"doctype": "DocType",
				"name": doctype,
				"module": module,
				"custom": 1,
				"autoname": "Prompt",
				"title_field": "title",
				"show_title_field_in_link": 1,
				"fields": [
					{
						"fieldname": "title",
						"label": "Title",
						"fieldtype": "Data",
						"reqd": 1,
						"in_list_view": 1,
					},
					*extra_fields,
				],
				"permissions": [
					{"role": "System Manager", "read": 1, "write": 1, "create": 1, "delete": 1},
				],
			}
		).insert(ignore_permissions=True)
		created.append(doctype)
	if module == "Memora Storage":  # as a migrate does on a site with this app
		index_parent_fields()
	frappe.db.commit()
	return created


def _upsert(doctype: str, name: str, values: dict) -> None:
	if frappe.db.exists(doctype, name):
		frappe.get_doc(doctype, name).update(values).save()
	else:
		frappe.get_doc({"doctype": doctype, "name": name, **values}).insert()


def run() -> None:
	"""Create (or refresh) the sample content, commit, and print each file with its URL."""
	ensure_content_doctypes()
	for plan, spec in SAMPLE.items():
		_upsert("Plan", plan, {"title": spec["title"]})
		for subject, units in spec["subjects"].items():
			_upsert("Subject", subject, {"title": subject.replace("demo-", "").title(), "plan": plan})
			for unit in units:
				_upsert(
					"Unit",
					unit,
					{
						"title": unit.replace("demo-", "").title(),
						"subject": subject,
						"body": f"Lesson: {unit}",
					},
				)
	frappe.db.commit()  # files are written once the commit lands

	store = settings.content_store()
	print(f"Content root: {store.root.resolve()}")
	print(f"URLs point to: {settings.url_settings().base_url}")
	for doctype, content_type in get_content_map().items():
		for name in frappe.get_all(doctype, pluck="name", order_by="name asc"):
			path = path_of(content_type, frappe.get_doc(doctype, name))
			state = "written" if store.exists(path) else "MISSING"
			print(f"  {doctype:8} {name:24} {path:56} {state:8} {get_content_url(path)}")
