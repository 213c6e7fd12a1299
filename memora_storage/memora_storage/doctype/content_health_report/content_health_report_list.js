// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.listview_settings["Content Health Report"] = {
	add_fields: ["status"],
	get_indicator(doc) {
		const colors = { Healthy: "green", "Problems Found": "orange", Failed: "red" };
		return [__(doc.status), colors[doc.status] || "gray", `status,=,${doc.status}`];
	},
	onload(listview) {
		listview.page.add_inner_button(__("Run Health Scan"), () => run_health_check(0, 0), __("Scan"));
		listview.page.add_inner_button(__("Run Full Health Scan"), () => run_health_check(1, 0), __("Scan"));
		listview.page.add_inner_button(__("Run Deep Health Scan"), () => run_health_check(1, 1), __("Scan"));
	},
};

function run_health_check(full, deep) {
	frappe.call({ method: "memora_storage.api.run_health_check", args: { full, deep } });
}
