// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.listview_settings["Content Health Report"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		const colors = { Healthy: "green", "Problems Found": "orange", Failed: "red" };
		return [__(doc.status), colors[doc.status] || "gray", `status,=,${doc.status}`];
	},
	onload(listview) {
		listview.page.add_inner_button(__("Run Health Scan"), () => run_health_check(false), __("Scan"));
		listview.page.add_inner_button(__("Run Full Health Scan"), () => run_health_check(true), __("Scan"));
	},
};

function run_health_check(full) {
	frappe.call({ method: "memora_storage.api.run_health_check", args: { full: full ? 1 : 0 } });
}
