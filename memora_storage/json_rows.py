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
_ORDER = "`modified`, `name`"  # the order `chunks` pages in: that of Frappe's index on `modified`


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
	"""Every row of `doctype` as lists of `fields` ("name" and "modified" first), `size` rows a query:
	what a scan holds at once stays the same however many rows there are.

	Rows come in (modified, name) order, a page after the last row of the one before, from the index
	Frappe keeps on `modified` of every document table: that index holds the name too, so where
	`fields` are those two (a Unit's), each query reads the index alone. Read in name order, the same
	pages walked the table itself, whose rows hold whole documents: at 100,000 Units, 2 GB through a
	buffer pool of 128 MB, read from disk at every scan. Pages of one transaction see one snapshot, so
	a row saved meanwhile, which moves to the end, is not read twice. NULL sorts first.
	"""
	if fields[:2] != ["name", "modified"]:
		raise ValueError(f"the first fields must be name and modified, got {fields[:2]!r}")
	last = None
	while True:
		page, values = page_query(doctype, fields, last, size)
		result = frappe.db.sql(
			f"""{_UNCAPPED}select json_arrayagg(json_array({_columns(fields)}) order by {_ORDER})
			from ({page}) chunk""",
			values,
		)
		batch = json.loads(result[0][0]) if result[0][0] else []
		if batch:
			yield batch
		if len(batch) < size:
			return
		last = batch[-1]


def page_query(doctype: str, fields: list[str], last: list | None, size: int) -> tuple[str, tuple]:
	"""The query of one page of `chunks`, and its values: the `size` rows after `last` (a row of the
	page before, name and modified first; None for the first page)."""
	if last is None:
		after, values = "", ()
	elif last[1] is None:
		after, values = "where (`modified` is null and `name` > %s) or `modified` is not null", (last[0],)
	else:
		after = "where `modified` > %s or (`modified` = %s and `name` > %s)"
		values = (last[1], last[1], last[0])
	query = f"select {_columns(fields)} from `tab{doctype}` {after} order by {_ORDER} limit %s"
	return query, (*values, size)


def _columns(fields: list[str]) -> str:
	return ", ".join(f"`{field}`" for field in fields)
