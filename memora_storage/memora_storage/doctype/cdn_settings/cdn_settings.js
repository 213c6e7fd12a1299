// Copyright (c) 2026, Memora and contributors
// For license information, please see license.txt

frappe.ui.form.on("CDN Settings", {
	refresh(frm) {
		// An access key is not a password a person chose: no strength meter (nor a request per keystroke
		// that sends the secret to the server to be rated).
		frm.get_field("secret_access_key").disable_password_checks();
		// Blue only while URLs point to the CDN: Local Fallback Mode or the health probe's verdict
		// (failover) send them to this server with Enable CDN still on.
		const cdn_base = (frm.doc.cdn_base_url || "").replace(/\/+$/, "");
		const colour = frm.doc.enable_cdn && cdn_base && frm.doc.current_base_url === cdn_base ? "blue" : "orange";
		frm.set_intro(__("Content URLs now point to: {0}", [frm.doc.current_base_url || "—"]), colour);
		if (frm.doc.bucket) {
			frm.add_custom_button(__("Test Connection"), () => test_connection(frm), __("CDN"));
			frm.add_custom_button(__("Verify CDN Now"), () => verify_cdn(), __("CDN"));
			frm.add_custom_button(
				__("Apply CORS Rule"),
				() => {
					if (frm.is_dirty()) {
						frappe.msgprint(__("Save the settings first: the rule uses the saved origins."));
						return;
					}
					frm.call({ method: "apply_cors_rule", freeze: true }).then((r) =>
						frappe.msgprint({
							title: __("CORS rule applied"),
							indicator: "green",
							message: frappe.utils.escape_html(r.message),
						})
					);
				},
				__("CDN")
			);
			frm.add_custom_button(
				__("Retry All Failed"),
				() => frappe.call({ method: "memora_storage.api.retry_all_failed" }),
				__("CDN")
			);
		}
		show_scheduler(frm, colour);
		frm.add_custom_button(
			__("Run Health Scan"),
			() => frappe.call({ method: "memora_storage.api.run_health_check", args: { full: 0 } }),
			__("Content")
		);
		frm.add_custom_button(
			__("Rebuild All Content Files"),
			() =>
				frappe.confirm(__("Render every content file again in the background?"), () =>
					frappe.call({ method: "memora_storage.api.rebuild_all" })
				),
			__("Content")
		);
	},
});

// Failover, the disk guard and the upload safety net are the scheduler's per-minute jobs: say when
// they last ran, and why when that was too long ago. Frappe v15 has one headline block per form, in
// one colour: this line joins the intro's, and turns the block red only when the jobs have stopped.
function show_scheduler(frm, colour) {
	frappe.call({ method: "memora_storage.api.scheduler_status" }).then((r) => {
		const status = r.message;
		let message = status.last_ran
			? __("The scheduler last ran this app's jobs {0} minute(s) ago.", [status.minutes_ago])
			: __("The scheduler has not run this app's jobs since Redis last started.");
		if (status.stale) {
			message += " " + __("Failover and uploads are not running, because {0}.", [status.reason]);
		}
		frm.dashboard.set_headline_alert(frappe.utils.escape_html(message), status.stale ? "red" : colour);
	});
}

function test_connection(frm) {
	if (frm.is_dirty()) {
		frappe.msgprint(__("Save the settings first: the test uses the saved values."));
		return;
	}
	frappe
		.call({ method: "memora_storage.api.test_connection", freeze: true, freeze_message: __("Testing…") })
		.then((r) => {
			const labels = {
				write: __("Write a probe object"),
				read: __("Read it back"),
				list: __("List it"),
				delete: __("Delete it"),
				cors: __("Browsers may fetch it (CORS)"),
				purge: __("A purge reaches the edge"),
			};
			const rows = r.message.steps
				.map(
					(s) =>
						`<tr data-step="${frappe.utils.escape_html(s.name)}"><td>${frappe.utils.escape_html(
							labels[s.name] || s.name
						)}</td><td>${s.ok ? "✔" : s.warning ? "⚠" : "✘"}</td><td>${
							s.seconds
						}s</td><td>${frappe.utils.escape_html(s.message || "")}</td></tr>`
				)
				.join("");
			frappe.msgprint({
				title: r.message.ok ? __("Connection works") : __("Connection failed"),
				indicator: r.message.ok ? "green" : "red",
				message: `<p>${frappe.utils.escape_html(
					r.message.message
				)}</p><table class="table table-bordered">${rows}</table>`,
			});
		});
}

function verify_cdn() {
	// A job: its progress and the link to its report arrive through the realtime server.
	frappe.call({ method: "memora_storage.api.verify_cdn" });
}

// The health probe's latest results, newest first (CDN Probe holds them all).
frappe.ui.form.on("CDN Settings", {
	refresh(frm) {
		const probes = (frm.doc.__onload && frm.doc.__onload.probes) || [];
		const field = frm.get_field("probe_results");
		if (!probes.length) {
			field.$wrapper.html(`<p class="text-muted">${__("No probe yet.")}</p>`);
			return;
		}
		const rows = probes
			.map(
				(p) => `<tr data-outcome="${frappe.utils.escape_html(p.outcome)}">
					<td>${frappe.datetime.str_to_user(p.probed_at)}</td>
					<td><span class="indicator-pill ${p.outcome === "Healthy" ? "green" : "red"}">${__(
					p.outcome
				)}</span></td>
					<td>${__(p.source)}</td>
					<td>${p.latency_ms} ms</td>
					<td>${frappe.utils.escape_html(p.error || "")}</td></tr>`
			)
			.join("");
		field.$wrapper.html(`<table class="table table-bordered table-sm">
			<thead><tr><th>${__("Probed At")}</th><th>${__("Outcome")}</th><th>${__("Source")}</th><th>${__(
			"Latency"
		)}</th><th>${__("Error")}</th></tr></thead><tbody>${rows}</tbody></table>
			<a href="/app/cdn-probe">${__("All probes")}</a>`);
	},
});
