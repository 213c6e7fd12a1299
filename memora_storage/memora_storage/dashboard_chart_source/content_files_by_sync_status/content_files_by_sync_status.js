// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.provide("frappe.dashboards.chart_sources");

// The workspace's Content Files by Sync Status: one slice per status, always in the same order, so
// the chart's custom_options colours stay with their status (Synced green, Syncing blue, Failed red,
// Pending or Waiting for CDN orange). Frappe colours slices by position.
frappe.dashboards.chart_sources["Content Files by Sync Status"] = {
	method: "memora_storage.memora_storage.dashboard_chart_source.content_files_by_sync_status.content_files_by_sync_status.get",
	filters: [],
};
