"""docs/deploy.md names real parameters, secrets, settings and outputs of infra/main.bicep."""

from __future__ import annotations

import re
import unittest

from . import common as c

DEPLOY_MD = c.ROOT / "docs" / "deploy.md"


class TestDeployDoc(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.text = DEPLOY_MD.read_text()
        cls.doc = c.parse_bicep()

    def test_gives_the_deploy_commands_in_order(self) -> None:
        steps = [
            "az deployment group create -g",
            "scripts/package",
            "az functionapp deployment source config-zip -g",
        ]
        section = self.text[self.text.index("## Deploy, in this order"):]
        positions = [section.find(s) for s in steps]
        self.assertNotIn(-1, positions, dict(zip(steps, positions)))
        self.assertEqual(positions, sorted(positions))
        for s in ("az keyvault secret set", "Key Vault Secrets Officer", "az bicep build --file infra/main.bicep",
                  "az deployment group what-if", "handler --check", "incident.created.v1", "X-Halo-Secret"):
            self.assertIn(s, self.text)

    def test_parameters_named_in_the_doc_exist(self) -> None:
        named = set(re.findall(r"parameter `(\w+)`", self.text))
        self.assertTrue(named)
        self.assertFalse(named - set(self.doc["parameters"]), f"unknown parameters: {sorted(named - set(self.doc['parameters']))}")

    def test_secret_names_and_settings_named_in_the_doc_exist(self) -> None:
        secret_names = set(c.Evaluator(self.doc, {})("secretNames").values())
        named_secrets = set(re.findall(r"secret `([a-z-]+)`", self.text))
        self.assertTrue(named_secrets)
        self.assertLessEqual(named_secrets, secret_names)
        settings = {s["name"] for s in c.handler_settings()}
        named_settings = set(re.findall(r"→ `([A-Z][A-Z0-9_]+)`", self.text)) | set(
            re.findall(r"\| `([A-Z][A-Z0-9_]+)` \|", self.text)
        )
        self.assertTrue(named_settings)
        self.assertLessEqual(named_settings, settings)

    def test_outputs_named_in_the_doc_exist(self) -> None:
        named = set(re.findall(r"properties\.outputs\.(\w+)\.value", self.text))
        named |= {n for n in re.findall(r"`(\w+)`", self.text) if n.endswith(("WebhookUrl", "KeyCommand"))}
        self.assertTrue(named)
        self.assertLessEqual(named, set(self.doc["outputs"]))


if __name__ == "__main__":
    unittest.main()
