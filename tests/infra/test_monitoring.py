"""Alerts of infra/main.bicep: handler 5xx rate, dead letters, handler restarts; the optional e-mail action group; the
queue write logs the dead-letter alert reads; and that the log lines the alerts look for are the ones the handler
writes. docs/operations.md must describe each alert."""

from __future__ import annotations

import re
import unittest

from . import common as c

OPERATIONS_MD = c.ROOT / "docs" / "operations.md"


class TestAlerts(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = c.parse_bicep()
        cls.ev = c.Evaluator(cls.doc, {"appName": "bridge"})
        cls.rules = {
            cls.ev(c.body(r)["name"]): r for r in c.resources_of_type(cls.doc, "Microsoft.Insights/scheduledQueryRules").values()
        }
        cls.ai_name, _ = c.one_resource(cls.doc, "Microsoft.Insights/components")
        cls.law_name, _ = c.one_resource(cls.doc, "Microsoft.OperationalInsights/workspaces")

    def rule(self, suffix: str) -> dict:
        (r,) = [r for n, r in self.rules.items() if n.endswith(suffix)]
        return c.body(r)

    def query(self, suffix: str) -> str:
        (crit,) = self.rule(suffix)["properties"]["criteria"]["allOf"]
        q = self.ev(crit["query"])
        self.assertIsInstance(q, str)
        # pycep-parser keeps a Bicep string's escapes as written: '\\' in the source is one backslash in the value.
        return q.replace("\\\\", "\\")

    def test_the_three_alerts_exist_always_enabled(self) -> None:
        self.assertEqual(sorted(n.removeprefix("alert-bridge-") for n in self.rules), ["dead-letters", "handler-5xx", "handler-restarts"])
        for r in c.resources_of_type(self.doc, "Microsoft.Insights/scheduledQueryRules").values():
            self.assertIsNone(c.condition(r), "alerts exist with or without an e-mail address")
            props = c.body(r)["properties"]
            self.assertIs(props["enabled"], True)
            self.assertIn(props["severity"], (0, 1, 2, 3, 4))
            self.assertIn("docs/operations.md", props["description"])

    def test_5xx_rate_on_application_insights_requests(self) -> None:
        props = self.rule("handler-5xx")["properties"]
        self.assertEqual(c.accessor_path(props["scopes"][0]), [self.ai_name, "id"])
        q = self.query("handler-5xx")
        self.assertTrue(q.startswith("requests "))
        self.assertIn("toint(resultCode) >= 500", q)
        self.assertIn("failedPercent", q)
        (crit,) = props["criteria"]["allOf"]
        self.assertEqual((crit["metricMeasureColumn"], crit["operator"]), ("failedPercent", "GreaterThan"))
        self.assertEqual(crit["threshold"], "http5xxPercentThreshold")
        self.assertEqual(self.doc["parameters"]["http5xxPercentThreshold"]["default"], 5)
        self.assertIn(f"where total >= {self.doc['parameters']['http5xxMinimumRequests']['default']}", q)

    def test_dead_letters_from_the_poison_queue_or_the_handler_log(self) -> None:
        props = self.rule("dead-letters")["properties"]
        self.assertEqual(c.accessor_path(props["scopes"][0]), [self.law_name, "id"])
        q = self.query("dead-letters")
        self.assertIn('StorageQueueLogs | where OperationName == "PutMessage" and ObjectKey contains "/work-items-poison"', q)
        self.assertIn('outcome=\\"dead-lettered\\"', q, "the handler's tracing line: outcome=\"dead-lettered\"")
        self.assertIn('\\"outcome\\":\\"dead-lettered\\"', q, "or a JSON log line")
        (crit,) = props["criteria"]["allOf"]
        self.assertEqual((crit["timeAggregation"], crit["operator"], crit["threshold"]), ("Count", "GreaterThan", 0))
        self.assertIs(props["autoMitigate"], False, "a dead letter needs a person, it does not resolve itself")

    def test_queue_writes_reach_log_analytics(self) -> None:
        settings = [c.body(r) for r in c.resources_of_type(self.doc, "Microsoft.Insights/diagnosticSettings").values()
                    if self.doc["resources"][c.body(r)["scope"]]["type"] == "Microsoft.Storage/storageAccounts/queueServices"]
        self.assertEqual(len(settings), 1)
        props = settings[0]["properties"]
        self.assertEqual(c.accessor_path(props["workspaceId"]), [self.law_name, "id"])
        self.assertIn({"category": "StorageWrite", "enabled": True}, props["logs"])

    def test_restarts_counted_per_instance_from_the_handlers_own_lines(self) -> None:
        props = self.rule("handler-restarts")["properties"]
        self.assertEqual(c.accessor_path(props["scopes"][0]), [self.ai_name, "id"])
        q = self.query("handler-restarts")
        self.assertIn("by cloud_RoleInstance", q)
        self.assertIn("where starts >= 3", q)
        self.assertEqual(props["windowSize"], "PT30M")
        started, failed = self.ev("handlerStartedMessage"), self.ev("handlerStartFailedMessage")
        self.assertIn(f'"{started}"', q)
        self.assertIn(f'"{failed}"', q)
        # The lines really are the handler's: tracing prints the message, then `addr=...`.
        startup = (c.ROOT / "src" / "startup.rs").read_text()
        self.assertRegex(startup, r'tracing::info!\(%addr, [^;]*"listening"\)')
        self.assertEqual(started, "listening addr=")
        self.assertIn(f'"{failed}"', (c.ROOT / "src" / "cli.rs").read_text())

    def test_action_group_only_with_an_email(self) -> None:
        (name, ag) = c.one_resource(self.doc, "Microsoft.Insights/actionGroups")
        self.assertIsNotNone(c.condition(ag))
        self.assertIs(c.Evaluator(self.doc, {"alertEmail": ""})(c.condition(ag)), False)
        self.assertIs(c.Evaluator(self.doc, {"alertEmail": "ops@example.com"})(c.condition(ag)), True)
        props = c.body(ag)["properties"]
        self.assertLessEqual(len(props["groupShortName"]), 12, "Azure's limit on the short name")
        self.assertEqual(props["emailReceivers"][0]["emailAddress"], "alertEmail")
        for r in c.resources_of_type(self.doc, "Microsoft.Insights/scheduledQueryRules").values():
            self.assertEqual(c.body(r)["properties"]["actions"], "alertActions")
        self.assertEqual(c.Evaluator(self.doc, {"alertEmail": ""})("alertActions"), {"actionGroups": []})

    def test_operations_doc_explains_each_alert(self) -> None:
        text = OPERATIONS_MD.read_text()
        for r in self.rules.values():
            display = c.body(r)["properties"]["displayName"]
            with self.subTest(alert=display):
                self.assertIn(f"### {display}", text)
                section = text.split(f"### {display}", 1)[1].split("\n### ", 1)[0]
                self.assertRegex(section, r"(?i)what it means")
                self.assertRegex(section, r"(?i)what to do")
        self.assertRegex(text, r"(?i)waits on durable work")


if __name__ == "__main__":
    unittest.main()
