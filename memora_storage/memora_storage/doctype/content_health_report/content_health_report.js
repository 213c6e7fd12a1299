// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.ui.form.on("Content Health Report", {
	refresh(frm) {
		if (frm.doc.cdn_missing_count || frm.doc.cdn_mismatch_count) {
			frm.add_custom_button(__("Resync"), () =>
				frappe.call({ method: "memora_storage.api.resync", args: { report: frm.doc.name } })
			);
		}
	},
});
