"""docs/deploy.md names real parameters, secrets, settings and outputs of infra/main.bicep, and the deploy commands
of the README, the runbook and the parameter file agree and work from where they are run (the repository root)."""

from __future__ import annotations

import re
import shlex
import subprocess
import unittest
from pathlib import Path, PurePosixPath

from . import common as c

DEPLOY_MD = c.ROOT / "docs" / "deploy.md"
README = c.ROOT / "README.md"
# Every place that gives a deploy command.
COMMAND_SOURCES = (README, DEPLOY_MD, c.MAIN_BICEP, c.MAIN_BICEPPARAM)


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


def deployment_commands(text: str) -> list[list[str]]:
    """Every `az deployment group create|what-if|validate ...` in the text (comment markers and `\\` joins removed)."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = []
    for m in re.finditer(r"az deployment group (?:create|what-if|validate) +-[^\n`]*", text):
        out.append(shlex.split(m.group(0).split(" #")[0]))
    return out


def option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
    return None


def using_target(param_file_text: str) -> str:
    m = re.search(r"(?m)^using '([^']+)'", param_file_text)
    assert m, "no using line"
    return m.group(1)


def git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=c.ROOT).returncode == 0


class TestDeployCommandsAgree(unittest.TestCase):
    """The finding: the runbook copied the parameter file out of the repository and passed -f, so `using` resolved
    next to the copy and Bicep refused a `using` that differs from -f. Every documented command must work as written."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.commands = {src: deployment_commands(src.read_text()) for src in COMMAND_SOURCES}
        cls.all_text = "\n".join(src.read_text() for src in COMMAND_SOURCES)

    def test_each_source_gives_the_command(self) -> None:
        for src, cmds in self.commands.items():
            with self.subTest(source=src.name):
                self.assertTrue([x for x in cmds if "create" in x], f"{src.name} gives no `az deployment group create`")

    def test_no_template_file_next_to_a_bicepparam(self) -> None:
        for src, cmds in self.commands.items():
            for cmd in cmds:
                with self.subTest(source=src.name, command=" ".join(cmd)):
                    self.assertIsNone(option(cmd, "-f", "--template-file"), "Bicep takes the template from `using`")
                    self.assertTrue((option(cmd, "-p", "--parameters") or "").endswith(".bicepparam"))
                    self.assertEqual(option(cmd, "-n", "--name"), "main", "named, so `az deployment group show -n main` finds it")

    def test_the_parameter_file_is_made_from_the_repository_copy_in_place(self) -> None:
        sources = {v: k for k, v in re.findall(r"cp (infra/main\.bicepparam) (\S+)", self.all_text)}
        for src, cmds in self.commands.items():
            for cmd in cmds:
                param = option(cmd, "-p", "--parameters")
                with self.subTest(source=src.name, param=param):
                    self.assertTrue(sources, "no documented `cp infra/main.bicepparam ...`")
                    if (c.ROOT / param).exists():
                        origin = param
                    else:
                        self.assertIn(param, sources, f"{param} neither exists nor is made by a documented `cp`")
                        origin = sources[param]
                        self.assertTrue(git_ignored(param), f"{param} holds real values: it must be git-ignored")
                        self.assertFalse(git_ignored(origin), f"{origin} is the committed template of it")
                    # `using` is resolved from the directory of the file passed to -p, i.e. of the copy.
                    target = PurePosixPath(param).parent / using_target((c.ROOT / origin).read_text())
                    resolved = (c.ROOT / target).resolve()
                    self.assertEqual(resolved, c.MAIN_BICEP.resolve(), f"`using` of {param} resolves to {target}")

    def test_files_the_commands_name_exist(self) -> None:
        text = README.read_text() + DEPLOY_MD.read_text()
        for path in sorted(set(re.findall(r"(?<![\w./-])((?:scripts|infra|docs|tests)/[\w./-]*\w)", text))):
            if git_ignored(path):
                continue
            with self.subTest(path=path):
                self.assertTrue((c.ROOT / path).exists(), f"{path} is named in the docs but does not exist")
        self.assertIn("dist/app.zip", (c.ROOT / "scripts" / "package").read_text(), "scripts/package writes dist/app.zip")

    def test_minimum_cli_version_and_halo_prerequisites_are_stated(self) -> None:
        text = DEPLOY_MD.read_text()
        self.assertRegex(text, r"Azure CLI 2\.60\.0 or later")
        for s in ("read:tickets", "edit:tickets", "read:customers", "/TicketType", "/Client", "/Status",
                  "az keyvault list-deleted", "az keyvault recover", "Logic App 01's** vault", "az functionapp restart",
                  "## Private mode", "basicPublishingCredentialsPolicies"):
            self.assertIn(s, text)


if __name__ == "__main__":
    unittest.main()
