// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.ui.form.on("Content File", {
	refresh(frm) {
		if (["Failed", "Pending"].includes(frm.doc.sync_status)) {
			frm.add_custom_button(__("Retry"), () => frm.call("retry_sync").then(() => frm.reload_doc()));
		}
		if (frm.doc.local_status === "Written" && frm.doc.path) {
			frm.add_custom_button(__("Open File"), () => {
				frappe
					.call("memora_storage.api.get_content_url", { path: frm.doc.path })
					.then((r) => window.open(r.message, "_blank"));
			});
		}
		if (frm.doc.reference_doctype && frm.doc.reference_name) {
			frm.add_custom_button(__("Roll Back to Previous Version"), () => {
				frappe.confirm(
					__("Swap {0} with its previous version? The CDN copy follows.", [frm.doc.path]),
					() =>
						frappe
							.call("memora_storage.api.rollback", { path: frm.doc.path })
							.then(() => frm.reload_doc())
				);
			});
		}
	},
});
