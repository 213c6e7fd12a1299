"""`.prev` backups used to sit beside each content file in `public/files/memora_content`, where a guest could
fetch a retracted version at `/files/memora_content/…/NAME.prev`. Move them to the site's private root
(`private/memora_content/prev`, served by nothing), and delete the temp files killed writers left there.

The file work is `ContentStore.tidy` (tested without Frappe). It never fails the migration: what it cannot
move is listed in the Error Log, and running the patch again (`bench --site SITE execute
memora_storage.patches.move_prev_files_private.execute`) picks up where it stopped.
"""

import frappe

from memora_storage import settings


def execute() -> None:
	store = settings.content_store()
	result = store.tidy()
	print(
		f"memora_storage: {result.moved} .prev files moved to {store.private_root}, {result.dropped} older "
		f"duplicates deleted, {result.temps} stale temp files deleted"
	)
	if result.errors:
		frappe.log_error(
			title="memora_storage: .prev files left in public",
			message="\n".join(result.errors),
		)
		print(f"memora_storage: {len(result.errors)} files could not be moved, see Error Log")
