"""Every name infra/main.bicep derives from a parameter obeys Azure's naming rule for its resource type, and the
parameters' decorators and character checks accept exactly the values for which all derived names do.

The rules (length and characters per resource type) are those of
https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules and, for queues, tables and
containers, of the Storage naming pages it links to.
"""

from __future__ import annotations

import re
import unittest
from typing import Any

from . import common as c

NETWORK = r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9_])?"
# resource type -> (min length, max length, full-match regex of the characters and their positions)
RULES: dict[str, tuple[int, int, str]] = {
    "Microsoft.Web/sites": (2, 60, r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"),
    "Microsoft.Web/serverfarms": (1, 60, r"[A-Za-z0-9-]+"),
    "Microsoft.OperationalInsights/workspaces": (4, 63, r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"),
    "Microsoft.Insights/components": (1, 260, r"[^%&\\?/]*[^%&\\?/. ]"),
    "Microsoft.ManagedIdentity/userAssignedIdentities": (3, 128, r"[A-Za-z0-9][A-Za-z0-9_-]*"),
    "Microsoft.Storage/storageAccounts": (3, 24, r"[a-z0-9]+"),
    "Microsoft.Storage/storageAccounts/tableServices/tables": (3, 63, r"[A-Za-z][A-Za-z0-9]*"),
    "Microsoft.Storage/storageAccounts/queueServices/queues": (3, 63, r"(?!.*--)[a-z0-9]([a-z0-9-]*[a-z0-9])?"),
    "Microsoft.Storage/storageAccounts/blobServices/containers": (3, 63, r"(?!.*--)[a-z0-9]([a-z0-9-]*[a-z0-9])?"),
    "Microsoft.KeyVault/vaults": (3, 24, r"(?!.*--)[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?"),
    "Microsoft.KeyVault/vaults/secrets": (1, 127, r"[A-Za-z0-9-]+"),
    "Microsoft.Network/virtualNetworks": (2, 64, NETWORK),
    "Microsoft.Network/networkSecurityGroups": (1, 80, NETWORK),
    "Microsoft.Network/natGateways": (1, 80, NETWORK),
    "Microsoft.Network/publicIPAddresses": (1, 80, NETWORK),
    "Microsoft.Network/privateEndpoints": (2, 64, NETWORK),
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": (1, 80, NETWORK),
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": (1, 80, NETWORK),
    "Microsoft.Network/privateDnsZones": (1, 63, r"([A-Za-z0-9_-]+\.){1,33}[A-Za-z0-9_-]+"),
    "Microsoft.Insights/actionGroups": (1, 260, r"[^%&\\?/]*[^%&\\?/. ]"),
    "Microsoft.Insights/scheduledQueryRules": (1, 260, r"[^*<>%{}&:\\?/#|]*[^*<>%{}&:\\?/#|. ]"),
    "Microsoft.Insights/diagnosticSettings": (1, 260, r"[^*<>%{}&:\\?/#|]+"),
}
# Fixed names the platform prescribes ('default' services, 'scm'/'ftp' policies), and GUID names (role assignments,
# workbooks: tests/infra/test_workbook.py checks the workbook's guid()).
FIXED = {
    "Microsoft.Insights/workbooks",
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/tableServices",
    "Microsoft.Storage/storageAccounts/queueServices",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
    "Microsoft.Authorization/roleAssignments",
}
NAME_PARAMS = ("appName", "keyVaultName", "storageAccountName", "stateTableName")
# A valid value of each, to hold the others fixed.
VALID = {"appName": "bridge-app", "keyVaultName": "kv-bridge", "storageAccountName": "stbridge", "stateTableName": "bridgestate"}


def obeys(rtype: str, name: str) -> bool:
    lo, hi, pattern = RULES[rtype]
    return lo <= len(name) <= hi and re.fullmatch(pattern, name) is not None


class TestNames(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = c.parse_bicep()
        cls.text = c.MAIN_BICEP.read_text()

    def derived_names(self, **params: Any) -> list[tuple[str, str, str]]:
        """(symbolic name, type, name) of every resource, with the given parameters (private mode, so all exist)."""
        ev = c.Evaluator(self.doc, {**VALID, "networkMode": "private", **params})
        out = []
        for sym, r in self.doc["resources"].items():
            if r["type"] in FIXED:
                continue
            expr = c.body(r)["name"]
            # The identity's name carries the name check, which fails the deployment itself on a bad name: here the
            # names that would be deployed are wanted, so it is left out.
            if isinstance(expr, str):
                expr = expr.replace("${nameCheck}", "")
            name = ev(expr)
            self.assertIsInstance(name, str, f"{sym}: name not evaluated: {name!r}")
            out.append((sym, r["type"], name))
        return out

    def all_obey(self, **params: Any) -> list[str]:
        return [f"{sym} ({t}): {n!r}" for sym, t, n in self.derived_names(**params) if not obeys(t, n)]

    def decorator(self, param: str, kind: str) -> int:
        return next(d["argument"] for d in self.doc["parameters"][param]["decorators"] if d["type"] == kind)

    def bicep_accepts(self, **params: Any) -> bool:
        """What the template accepts: within the decorators' lengths and no nameProblems."""
        values = {**VALID, **params}
        for p in NAME_PARAMS:
            if not self.decorator(p, "min_length") <= len(values[p]) <= self.decorator(p, "max_length"):
                return False
        return c.Evaluator(self.doc, values)("nameProblems") == []

    def test_every_resource_type_has_a_rule(self) -> None:
        types = {r["type"] for r in self.doc["resources"].values()} - FIXED
        self.assertFalse(types - set(RULES), f"add the naming rule of {sorted(types - set(RULES))}")

    def test_valid_values_give_valid_names_everywhere(self) -> None:
        self.assertEqual(self.all_obey(), [])
        self.assertTrue(self.bicep_accepts())

    def test_max_length_is_the_tightest_derived_limit(self) -> None:
        for param in NAME_PARAMS:
            with self.subTest(param=param):
                longest = self.decorator(param, "max_length")
                fill = "a" * longest
                self.assertEqual(self.all_obey(**{param: fill}), [], f"{param} of {longest} characters breaks a name")
                self.assertNotEqual(self.all_obey(**{param: fill + "a"}), [], f"{param} could be longer than {longest}")

    def test_min_length_is_the_tightest_derived_limit(self) -> None:
        for param in NAME_PARAMS:
            with self.subTest(param=param):
                shortest = self.decorator(param, "min_length")
                self.assertEqual(self.all_obey(**{param: "a" * shortest}), [])
                if shortest > 1:
                    self.assertNotEqual(self.all_obey(**{param: "a" * (shortest - 1)}), [])

    def test_character_rules_accept_exactly_the_valid_names(self) -> None:
        samples = [
            "bridge", "Bridge01", "b-r-i", "bridge-", "-bridge", "br--idge", "9bridge", "bridge9", "bri_dge",
            "bri.dge", "bri dge", "brïdge", "BRIDGE", "b1", "ab-", "x" * 10 + "Y",
        ]
        for param in NAME_PARAMS:
            for value in samples:
                lo, hi = self.decorator(param, "min_length"), self.decorator(param, "max_length")
                if not lo <= len(value) <= hi:
                    continue
                with self.subTest(param=param, value=value):
                    azure_ok = self.all_obey(**{param: value}) == []
                    self.assertEqual(self.bicep_accepts(**{param: value}), azure_ok)

    def test_state_table_name_rule_is_checked(self) -> None:
        # The finding of the review: only its length used to be checked.
        self.assertFalse(self.bicep_accepts(stateTableName="bridge-state"))
        self.assertFalse(self.bicep_accepts(stateTableName="1bridge"))
        self.assertTrue(self.bicep_accepts(stateTableName="Bridge1"))

    def test_app_name_of_56_fails_before_deploying(self) -> None:
        self.assertEqual(self.decorator("appName", "max_length"), 55)

    def test_a_problem_stops_the_deployment_before_any_resource(self) -> None:
        uami_sym, uami = c.one_resource(self.doc, "Microsoft.ManagedIdentity/userAssignedIdentities")
        self.assertIn("${nameCheck}", c.body(uami)["name"])
        check = self.doc["variables"]["nameCheck"]["value"]["operator"]["operands"]
        self.assertEqual(check["condition"], {"function": {"type": "empty", "parameters": {"item_to_test": "nameProblems"}}})
        self.assertEqual(check["true_value"], "")
        problems = c.Evaluator(self.doc, {**VALID, "appName": "-x", "stateTableName": "a-b"})("nameProblems")
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith("appName ") and problems[1].startswith("stateTableName "))

    def test_the_rule_is_written_next_to_each_name_parameter(self) -> None:
        for param in NAME_PARAMS:
            with self.subTest(param=param):
                block = self.text[: self.text.index(f"param {param} string")].rsplit("\n\n", 1)[-1]
                self.assertRegex(block, r"// Rules? \(resource-name-rules", f"no '// Rule (resource-name-rules...' above {param}")


if __name__ == "__main__":
    unittest.main()
