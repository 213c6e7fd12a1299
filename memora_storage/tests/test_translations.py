"""The Arabic translation: every user-facing string of the app has a row, and Frappe serves it on the site.

Messages are found the way Frappe's own translation tools find them (babel for `_()` in Python and
`__()` in JavaScript) and from the DocType, Workspace, Number Card and Dashboard Chart JSON, so a new
string without an Arabic row fails here.
"""

import json
import os
import re
from pathlib import Path

import frappe
from frappe import _
from frappe.tests.utils import FrappeTestCase
from frappe.translate import (
	clear_cache,
	get_all_translations,
	get_messages_from_file,
	get_translation_dict_from_file,
)

APP = "memora_storage"
LANG = "ar"
# Frappe's `_` strips tags before it looks a message up (the same pattern as frappe.utils.strip_html_tags)
HTML_TAGS = re.compile(r"\<[^>]*\>")
# {0} and {name}: what .format() and __()'s replace array fill in; {CDN Base URL} in a description is prose
PLACEHOLDER = re.compile(r"\{(?:\d*|[a-z_]+)\}")


def app_path(*parts: str) -> Path:
	return Path(frappe.get_app_path(APP, *parts))


def csv_translations() -> dict[str, str]:
	"""ar.csv read by Frappe's own reader: source (or source:context) -> translation."""
	path = app_path("translations", f"{LANG}.csv")
	assert path.exists(), f"{path} is missing"
	return get_translation_dict_from_file(str(path), LANG, APP, throw=True)


def code_messages(extension: str) -> list[tuple[str, str, str | None]]:
	"""(file, message, context) of every `_()` (.py) or `__()` (.js) call, outside utils/ and tests/."""
	frappe.flags.scanned_files = set()  # get_messages_from_file reads each path once per process
	messages = []
	root = app_path()
	for dirpath, dirnames, filenames in os.walk(root):
		dirnames[:] = [d for d in dirnames if d not in {"utils", "tests", "__pycache__", "dist"}]
		for filename in filenames:
			if filename.endswith(extension):
				for path, message, context, _line in get_messages_from_file(os.path.join(dirpath, filename)):
					messages.append((path, message, context))
	return messages


def json_messages() -> list[tuple[str, str]]:
	"""(file, message) of what Desk translates in the app's DocTypes, Workspaces, Number Cards and Charts."""
	messages = []
	for path in sorted(app_path("memora_storage").rglob("*.json")):
		doc = json.loads(path.read_text())
		found: list[str | None] = []
		kind = doc.get("doctype")
		if kind == "DocType":
			found += [doc["name"], doc.get("module"), doc.get("description")]
			for field in doc.get("fields", []):
				found += [field.get("label"), field.get("description")]
				if field.get("fieldtype") == "Select" and field.get("options"):
					options = field["options"].split("\n")
					if "icon" not in options[0]:
						found += options
			found += [perm.get("role") for perm in doc.get("permissions", [])]
		elif kind == "Workspace":
			found += [doc.get("label"), doc.get("title"), doc.get("module")]
			for table in ("links", "shortcuts", "charts", "number_cards", "quick_lists", "custom_blocks"):
				found += [row.get("label") for row in doc.get(table, [])]
			for block in json.loads(doc.get("content") or "[]"):
				if block.get("type") in ("header", "paragraph"):
					found.append(HTML_TAGS.sub("", block["data"].get("text") or "").strip())
		elif kind == "Number Card":
			found.append(doc.get("label"))
		elif kind == "Dashboard Chart":
			found.append(doc.get("chart_name"))
		messages += [(str(path), message) for message in found if message and message.strip()]
	return messages


def lookup_keys(message: str, context: str | None, python: bool) -> list[str]:
	"""The keys Frappe tries for a message: `_` drops tags first; context falls back to none."""
	text = HTML_TAGS.sub("", message).strip() if python else message
	return [f"{text}:{context}", text] if context else [text]


class TestArabicTranslation(FrappeTestCase):
	def setUp(self) -> None:
		self.translations = csv_translations()

	def assert_all_translated(self, messages: list[tuple[str, str, str | None]], python: bool) -> None:
		missing = sorted(
			{
				f"{os.path.basename(path)}: {message!r}"
				for path, message, context in messages
				if not any(key in self.translations for key in lookup_keys(message, context, python))
			}
		)
		self.assertFalse(missing, f"no Arabic row in translations/{LANG}.csv for:\n" + "\n".join(missing))

	def test_every_python_message_has_a_row(self):
		messages = code_messages(".py")
		self.assertGreater(len(messages), 50)  # the extractor works: api.py, scans.py, ... hold dozens
		self.assert_all_translated(messages, python=True)

	def test_every_javascript_message_has_a_row(self):
		messages = code_messages(".js")
		self.assertGreater(len(messages), 20)
		self.assert_all_translated(messages, python=False)

	def test_every_doctype_workspace_card_and_chart_label_has_a_row(self):
		messages = json_messages()
		self.assertIn("Enable CDN", {message for _path, message in messages})
		self.assert_all_translated([(path, message, None) for path, message in messages], python=False)

	def test_placeholders_and_tags_survive(self):
		# a row keyed by a message's tag-less text (for `_`) carries the tags of that message
		with_tags = {
			HTML_TAGS.sub("", message).strip(): message
			for _path, message, _context in code_messages(".py")
			if HTML_TAGS.search(message)
		}
		broken = []
		for key, translation in self.translations.items():
			source = with_tags.get(key, key)
			self.assertTrue(translation.strip(), f"empty translation for {key!r}")
			for pattern in (PLACEHOLDER, HTML_TAGS):
				if sorted(pattern.findall(source)) != sorted(pattern.findall(translation)):
					broken.append(f"{source!r} -> {translation!r}")
		self.assertFalse(broken, "placeholders or HTML tags differ:\n" + "\n".join(broken))


class TestArabicOnSite(FrappeTestCase):
	"""Frappe loads the CSV from the installed app and `_` answers in Arabic."""

	def setUp(self) -> None:
		self.lang = getattr(frappe.local, "lang", None)
		clear_cache()
		frappe.local.lang = LANG

	def tearDown(self) -> None:
		frappe.local.lang = self.lang

	def test_underscore_returns_arabic(self):
		translations = csv_translations()
		self.assertEqual(_("Enable CDN"), translations["Enable CDN"])
		self.assertEqual(_("Enable CDN"), "تفعيل شبكة توصيل المحتوى (CDN)")
		self.assertEqual(get_all_translations(LANG)["Content File"], "ملف المحتوى")
		self.assertEqual(_("Enable CDN", lang="en"), "Enable CDN")

	def test_every_python_message_is_served_in_arabic(self):
		# end to end through frappe._, HTML messages included: they come back translated with their tags
		untranslated = sorted(
			{
				message
				for _path, message, context in code_messages(".py")
				if _(message, context=context) == message
			}
		)
		self.assertFalse(untranslated, "frappe._ returns English for:\n" + "\n".join(map(repr, untranslated)))

	def test_email_templates_are_served_in_arabic(self):
		"""Alert bodies are templates whose messages go through `_`: in Arabic, with their markup intact."""
		message = frappe.render_template(
			"templates/emails/memora_storage_disk_recovered.html",
			{"free": "12.5", "path": "/srv/<content>", "min": "10", "waiting": 4, "link": None},
		)
		self.assertIn("<code>/srv/&lt;content&gt;</code>", message)
		self.assertIn("12.5%", message)
		self.assertIn("عادت المساحة الحرة", message)
		failed = frappe.render_template(
			"templates/emails/memora_storage_cdn_failed.html",
			{"rows": [frappe._dict(path="units/U.json", sync_operation="Upload", last_error="x")], "more": 3},
		)
		self.assertIn("…وغيرها (3).", failed)
