app_name = "memora_storage"
app_title = "Memora Storage"
app_publisher = "Memora"
app_description = "Local-first storage for generated JSON content, synced to an S3-compatible CDN, with instant local fallback"
app_email = "dev@memora.example"
app_license = "mit"

# Content documents (Plan, Subject, Unit by default; see memora_storage.content_map.get_content_map)
# are written to disk after their transaction commits. The handlers return at once for any
# DocType outside the content map.
doc_events = {
	"*": {
		"validate": "memora_storage.publishing.validate",
		"on_update": "memora_storage.publishing.on_update",
		"on_trash": "memora_storage.publishing.on_trash",
		"after_rename": "memora_storage.publishing.after_rename",
	},
	# A change of what a mapped DocType publishes re-renders every file (memora_storage.meta_changes).
	"DocType": {
		"on_update": "memora_storage.meta_changes.on_meta_change",
		"on_trash": "memora_storage.meta_changes.on_meta_change",
	},
	"Custom Field": {
		"on_update": "memora_storage.meta_changes.on_meta_change",
		"on_trash": "memora_storage.meta_changes.on_meta_change",
	},
	"Property Setter": {
		"on_update": "memora_storage.meta_changes.on_meta_change",
		"on_trash": "memora_storage.meta_changes.on_meta_change",
	},
}

# Frappe v15's frappe.client.get_count checks no permission; this one does (memora_storage/overrides.py).
override_whitelisted_methods = {"frappe.client.get_count": "memora_storage.overrides.get_count"}

# A Content File row records a document's file; it must not stop the document's deletion.
ignore_links_on_delete = ["Content File"]

# Cron times are in the site's time zone. The hourly entry checks CDN Settings' business hours itself;
# both scan entries queue the scan on the long queue under one job id, so scans never overlap.
scheduler_events = {
	"cron": {
		# Seconds in the sixth field: queued at every scheduler tick (60 s unless scheduler_tick_interval in
		# common_site_config.json is lower); the job itself keeps CDN Settings' probe interval.
		"* * * * * */5": [
			"memora_storage.uploads.tick",
		],
		"* * * * *": [
			"memora_storage.publishing.retry_pending_writes",
			"memora_storage.uploads.dispatch",
			"memora_storage.disk_guard.check",
		],
		"0 * * * *": [
			"memora_storage.scans.hourly",
			"memora_storage.meta_changes.check",
		],
		"30 1 * * *": [
			"memora_storage.scans.nightly",
		],
		"30 2 * * *": [
			"memora_storage.verification.nightly",
		],
	},
}

# Health scans add about a dozen Content Health Reports a day, probes up to 1,440 CDN Probes;
# Log Settings deletes them past 90 and 7 days.
default_log_clearing_doctypes = {"Content Health Report": 90, "CDN Probe": 7}

# Python and Jinja callers are never rate-limited; only the HTTP endpoints in api.py are.
jinja = {"methods": ["memora_storage.api.get_content_url"]}

# Where each path is served from lives in Redis (delivery_hash.py); `bench clear-cache` must not drop it.
persistent_cache_keys = ["memora_storage:delivery*"]
after_install = [
	"memora_storage.content_files.ensure_delivery_hash",
	"memora_storage.content_map.index_parent_fields",
]
after_migrate = [
	"memora_storage.content_map.index_parent_fields",
	"memora_storage.settings.republish",
	"memora_storage.content_files.rebuild_delivery_hash",
	"memora_storage.meta_changes.after_migrate",
]

# Another app may change the content map: a dotted path to a function that takes the map
# (DocType -> memora_storage.content_map.ContentType) and returns it.
# memora_content_map = ["my_app.memora.content_map"]

# DocType controllers carry generated type annotations of their fields (frappe.types).
export_python_type_annotations = True
