"""CDN Settings' Delivery Now and the probe record: what they say before, during and after failures."""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from memora_storage import failover, settings
from memora_storage.tests.utils import set_cdn_settings

CDN = "https://cdn.example.com/memora"


class TestDeliveryNow(FrappeTestCase):
	def setUp(self):
		frappe.db.delete(failover.PROBE)
		failover.reset("test start")
		frappe.db.commit()
		self.addCleanup(set_cdn_settings)

	def test_a_date_never_set_is_none_not_year_one(self):
		self.assertIsNone(settings.health_record().get("failing_since"))  # reset cleared it
		before = now_datetime()
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b", auto_failover=1)
		failover.record(False, "Probe", error="refused")
		failing_since = settings.health_record()["failing_since"]
		self.assertGreaterEqual(failing_since, before.replace(microsecond=0))
		self.assertIn("failing since", failover.describe(settings.get_settings()))
		self.assertNotIn("0001", failover.describe(settings.get_settings()))

	def test_without_automatic_switching_it_never_promises_a_switch(self):
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b", auto_failover=0)
		failover.record(False, "Probe", error="refused")
		text = failover.describe(settings.get_settings())
		self.assertIn("Switch to Local Automatically is off", text)
		self.assertNotIn("before switching", text)

	def test_a_failed_last_probe_is_not_called_healthy_after_a_reset(self):
		set_cdn_settings(enable_cdn=1, cdn_base_url=CDN, bucket="b", auto_failover=1)
		self.assertEqual(failover.describe(settings.get_settings()), "CDN (not probed yet).")
		failover.record(True, "Probe")
		self.assertTrue(failover.describe(settings.get_settings()).startswith("CDN, healthy (last probe "))
		failover.record(False, "Probe", error="refused")
		failover.reset("settings changed")
		frappe.db.commit()
		self.assertIn("failed; the count restarted", failover.describe(settings.get_settings()))
