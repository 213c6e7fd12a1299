"""Rows of a table read as JSON arrays that MariaDB builds, for the hot paths that read thousands of
plain rows: a parent's listing on every save, and every record of the nightly scan.

PyMySQL decodes each row in Python, about 4 ms for a thousand rows of three columns; json.loads
decodes one array in C, in a third of that, and a scan's 100,000 records in a sixth. Values come
back as JSON gives them: text, numbers and null as Python's driver would, dates and times as text.
"""

import json
from collections.abc import Iterator

import frappe

# JSON_ARRAYAGG is capped by group_concat_max_len (1 MB by default): lifted for each statement only.
_UNCAPPED = "SET STATEMENT group_concat_max_len=4294967295 FOR "


def rows(doctype: str, fields: list[str], field: str, value: str, order_by: str) -> list[list]:
	"""The rows of `doctype` whose `field` is `value`, as lists of `fields`, sorted by `order_by`
	(plain SQL from the content map, such as "creation asc, name asc")."""
	result = frappe.db.sql(
		f"""{_UNCAPPED}select json_arrayagg(json_array({_columns(fields)}) order by {order_by})
		from `tab{doctype}` where `{field}`=%s""",
		(value,),
	)
	return json.loads(result[0][0]) if result[0][0] else []


def chunks(doctype: str, fields: list[str], size: int = 10_000) -> Iterator[list[list]]:
	"""Every row of `doctype` as lists of `fields` ("name" first), `size` rows a query in name order:
	what a scan holds at once stays the same however many rows there are."""
	if fields[0] != "name":
		raise ValueError(f"the first field must be name, got {fields[0]!r}")
	last = ""
	while True:
		result = frappe.db.sql(
			f"""{_UNCAPPED}select json_arrayagg(json_array({_columns(fields)}) order by `name`)
			from (select {_columns(fields)} from `tab{doctype}` where `name` > %s order by `name`
			limit %s) chunk""",
			(last, size),
		)
		batch = json.loads(result[0][0]) if result[0][0] else []
		if batch:
			yield batch
		if len(batch) < size:
			return
		last = batch[-1][0]


def _columns(fields: list[str]) -> str:
	return ", ".join(f"`{field}`" for field in fields)
