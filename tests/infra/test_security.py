"""The security review's items in infra/main.bicep: publishing credentials, inbound allow-list, tags, secrets,
Key Vault audit log, durable-work queues. Private networking is tests/infra/test_network.py; alerts test_monitoring.py."""

from __future__ import annotations

import unittest
from typing import Any

from . import common as c

# Resource types that take no tags (extension and child resources without their own tags property).
UNTAGGABLE = {
    "Microsoft.Authorization/roleAssignments",
    "Microsoft.Insights/diagnosticSettings",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Storage/storageAccounts/tableServices",
    "Microsoft.Storage/storageAccounts/tableServices/tables",
    "Microsoft.Storage/storageAccounts/queueServices",
    "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
}


class SecurityTestCase(c.TemplateTestCase):
    def ev(self, **params: Any) -> c.Evaluator:
        return c.Evaluator(self.doc, params)


class TestPublishing(SecurityTestCase):
    def test_scm_and_ftp_basic_credentials_are_off(self) -> None:
        policies = c.resources_of_type(self.doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
        got = {}
        for name, r in policies.items():
            with self.subTest(policy=name):
                self.assertIsNone(c.condition(r), "always deployed")
                cfg = c.body(r)
                self.assertEqual(cfg["parent"], self.site_name)
                got[cfg["name"]] = cfg["properties"]["allow"]
        self.assertEqual(got, {"scm": False, "ftp": False})

    def test_ftp_state_disabled_and_tls_12_on_both_endpoints(self) -> None:
        sc = c.body(self.site)["properties"]["siteConfig"]
        self.assertEqual(sc["ftpsState"], "Disabled")
        self.assertEqual((sc["minTlsVersion"], sc["scmMinTlsVersion"]), ("1.2", "1.2"))


class TestInboundAllowList(SecurityTestCase):
    def site_config(self, **params: Any) -> dict[str, Any]:
        return self.ev(**params)(c.body(self.site)["properties"]["siteConfig"])

    def test_no_addresses_no_restriction(self) -> None:
        sc = self.site_config()
        self.assertEqual(sc["ipSecurityRestrictions"], [])
        self.assertEqual(sc["ipSecurityRestrictionsDefaultAction"], "Allow")
        for p in ("contraForceEgressAddresses", "haloEgressAddresses"):
            self.assertEqual(self.doc["parameters"][p]["default"], [])
            self.assertEqual(self.doc["parameters"][p]["type"], "array")

    def test_addresses_allow_only_them(self) -> None:
        cf, halo = ["198.51.100.7/32", "198.51.100.8/32"], ["203.0.113.0/28"]
        sc = self.site_config(contraForceEgressAddresses=cf, haloEgressAddresses=halo)
        rules = sc["ipSecurityRestrictions"]
        self.assertEqual([r["ipAddress"] for r in rules], cf + halo)
        self.assertEqual({r["action"] for r in rules}, {"Allow"})
        priorities = [r["priority"] for r in rules]
        self.assertEqual(len(set(priorities)), len(priorities), "distinct priorities")
        self.assertEqual(len({r["name"] for r in rules}), len(rules), "distinct names")
        self.assertEqual(sc["ipSecurityRestrictionsDefaultAction"], "Deny", "everything else is refused")
        # Either list alone restricts too.
        self.assertEqual(self.site_config(haloEgressAddresses=halo)["ipSecurityRestrictionsDefaultAction"], "Deny")

    def test_deployment_endpoint_keeps_its_own_rules(self) -> None:
        # The SCM site (zip deploy with an Entra token) is not bound to the senders' addresses.
        self.assertIs(c.body(self.site)["properties"]["siteConfig"]["scmIpSecurityRestrictionsUseMain"], False)

    def test_site_stays_public_for_the_webhooks(self) -> None:
        self.assertEqual(c.body(self.site)["properties"]["publicNetworkAccess"], "Enabled")


class TestTags(SecurityTestCase):
    def test_tags_parameter(self) -> None:
        p = self.doc["parameters"]["tags"]
        self.assertEqual(p["type"], "object")
        self.assertTrue(p["default"], "a default tag, so no resource goes untagged")

    def test_every_taggable_resource_has_the_tags(self) -> None:
        for name, r in self.doc["resources"].items():
            if r["type"] in UNTAGGABLE:
                continue
            with self.subTest(resource=name, type=r["type"]):
                self.assertEqual(c.body(r).get("tags"), "tags")

    def test_untaggable_list_is_not_a_hiding_place(self) -> None:
        for name, r in self.doc["resources"].items():
            if r["type"] in UNTAGGABLE:
                with self.subTest(resource=name):
                    self.assertNotIn("location", c.body(r), "a resource with a location takes tags")


class TestSecrets(SecurityTestCase):
    def test_each_secret_has_a_content_type_and_the_tags(self) -> None:
        secrets = c.resources_of_type(self.doc, "Microsoft.KeyVault/vaults/secrets")
        self.assertEqual(len(secrets), 5, "the four upstream secrets and the status page key")
        for name, r in secrets.items():
            with self.subTest(secret=name):
                ct = c.body(r)["properties"].get("contentType")
                self.assertIsInstance(ct, str)
                self.assertTrue(ct.startswith("text/plain"), ct)

    def test_key_vault_audit_events_go_to_log_analytics(self) -> None:
        law, _ = c.one_resource(self.doc, "Microsoft.OperationalInsights/workspaces")
        settings = [c.body(r) for r in c.resources_of_type(self.doc, "Microsoft.Insights/diagnosticSettings").values()
                    if c.body(r)["scope"] == self.kv_name]
        self.assertEqual(len(settings), 1, "one diagnostic setting on the vault")
        props = settings[0]["properties"]
        self.assertEqual(c.accessor_path(props["workspaceId"]), [law, "id"])
        logs = {(l.get("category") or l.get("categoryGroup")): l["enabled"] for l in props["logs"]}
        self.assertIs(logs.get("AuditEvent"), True)
        self.assertIsNone(c.condition(next(r for r in c.resources_of_type(self.doc, "Microsoft.Insights/diagnosticSettings").values() if c.body(r)["scope"] == self.kv_name)))


class TestDurableWorkQueues(SecurityTestCase):
    def test_the_work_queue_and_its_poison_queue_exist(self) -> None:
        ev = self.ev()
        queues = c.resources_of_type(self.doc, "Microsoft.Storage/storageAccounts/queueServices/queues")
        names = sorted(ev(c.body(q)["name"]) for q in queues.values())
        self.assertEqual(names, ["work-items", "work-items-poison"])
        # The host's poison queue is always '<queue>-poison'; the later step reads both names from these variables.
        self.assertEqual(self.doc["variables"]["poisonQueueName"]["value"], "${workQueueName}-poison")
        self.assertEqual(ev(self.doc["outputs"]["workQueueName"]["value"]), "work-items")
        self.assertEqual(ev(self.doc["outputs"]["poisonQueueName"]["value"]), "work-items-poison")
        depends = set(c.body(self.site)["dependsOn"])
        self.assertLessEqual(set(queues), depends)

    def test_queue_role_is_queue_data_contributor_on_the_account(self) -> None:
        ev = self.ev()
        found = []
        for name, ra in c.resources_of_type(self.doc, "Microsoft.Authorization/roleAssignments").items():
            cfg = c.body(ra)
            role = ev(c.function_call(cfg["properties"]["roleDefinitionId"])[1]["resource_name_1"])
            if role == c.ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR:
                found.append(cfg["scope"])
        self.assertEqual(found, [self.st_name])


if __name__ == "__main__":
    unittest.main()
