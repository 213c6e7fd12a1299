// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

const HEALTH_SCOPES = ["Hourly", "Full", "Manual"];

frappe.ui.form.on("Content Health Report", {
	refresh(frm) {
		if (frm.doc.cdn_missing_count || frm.doc.cdn_mismatch_count) {
			frm.add_custom_button(__("Resync"), () => frm.call("resync"));
		}
		if (
			HEALTH_SCOPES.includes(frm.doc.scope) &&
			frm.doc.orphaned_count > (frm.doc.orphans_deleted_count || 0)
		) {
			frm.add_custom_button(__("Delete Orphans"), () => delete_orphans(frm));
		}
	},
});

function delete_orphans(frm) {
	frappe.confirm(
		__(
			"Delete the {0} orphaned files this report lists? A file is kept if a document expects it now or it changed after the scan.",
			[frm.doc.orphaned_count]
		),
		() => frm.call("delete_orphans")
	);
}
