// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.listview_settings["Content File"] = {
	add_fields: ["local_status", "sync_status", "sync_operation"],
	onload(listview) {
		listview.page.add_action_item(__("Retry CDN Sync"), () => {
			const names = listview.get_checked_items(true);
			frappe
				.call({ method: "memora_storage.api.retry_sync", args: { names } })
				.then(() => listview.refresh());
		});
		listview.page.add_inner_button(__("Retry All Failed"), () =>
			frappe.call({ method: "memora_storage.api.retry_all_failed" }).then(() => listview.refresh())
		);
		// While delivery is local, due uploads wait for the CDN: they are not failing.
		frappe.call({ method: "memora_storage.api.delivery_status" }).then((r) => {
			this.waiting = r.message.waiting;
			if (this.waiting) {
				listview.page.set_indicator(__("Uploads wait: {0}", [this.waiting]), "orange");
				listview.refresh();
			}
		});
	},
	get_indicator(doc) {
		if (doc.local_status === "Pending") return [__("Write Pending"), "orange", "local_status,=,Pending"];
		if (doc.local_status === "Failed") return [__("Write Failed"), "red", "local_status,=,Failed"];
		const colors = { Pending: "orange", Syncing: "blue", Synced: "green", Failed: "red" };
		if (doc.sync_status === "Pending" && this.waiting)
			return [__("Waiting for CDN"), "yellow", "sync_status,=,Pending"];
		if (doc.sync_status)
			return [__(doc.sync_status), colors[doc.sync_status] || "gray", `sync_status,=,${doc.sync_status}`];
		return [__(doc.local_status || "Unknown"), "gray", `local_status,=,${doc.local_status}`];
	},
};
