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
		if (frm.doc.scope === "CDN Verification" && frm.doc.cdn_extra_count) {
			frm.add_custom_button(__("Delete Extra Objects"), () =>
				frappe.confirm(
					__(
						"Delete the {0} objects this report found on the CDN and not on this server? Above the deletion brake nothing is deleted: they are listed for you to confirm.",
						[frm.doc.cdn_extra_count]
					),
					() => frm.call("delete_extra_objects")
				)
			);
		}
		if (frm.doc.scope === "Deletion Brake" && !frm.doc.deletion_confirmed) {
			frm.add_custom_button(__("Confirm Deletion"), () =>
				frappe.confirm(
					__("Delete exactly the {0} CDN objects listed here? This cannot be undone.", [
						frm.doc.cdn_extra_count,
					]),
					() => frm.call("confirm_deletion")
				)
			);
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
