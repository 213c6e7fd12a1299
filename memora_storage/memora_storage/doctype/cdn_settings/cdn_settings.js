// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.ui.form.on("CDN Settings", {
	refresh(frm) {
		frm.set_intro(
			__("Content URLs now point to: {0}", [frm.doc.current_base_url || "—"]),
			frm.doc.enable_cdn && !frm.doc.local_fallback_mode ? "blue" : "orange"
		);
	},
});
