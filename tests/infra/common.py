"""Shared helpers of the infra tests: the handler's settings list, the parsed Bicep, and a tiny evaluator for the
parts of pycep-parser's output that the app-settings array is built from.

pycep-parser (https://pypi.org/project/pycep-parser/) turns Bicep into a dict. It does not tell a string literal from
an identifier: both come out as plain `str`. The helpers below resolve a `str` as a parameter or variable when one of
that name exists, and as a literal otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import unittest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
MAIN_BICEPPARAM = INFRA / "main.bicepparam"
# Where cargo builds, as cargo resolves it (CARGO_TARGET_DIR, relative or not, or target/): scripts/target-dir.
HANDLER_DEBUG = Path(subprocess.run([str(ROOT / "scripts" / "target-dir")], check=True, capture_output=True, text=True).stdout.strip()) / "debug" / "handler"

# Connection-string forms the binary reads but the deployment replaces by identity-based settings.
NOT_SET = {"StateStorage", "AzureWebJobsStorage"}
# Settings the Functions host (not the binary) reads, which the deployment sets as well.
HOST_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Flex Consumption rejects or ignores these; runtime and deployment live in functionAppConfig.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "AzureWebJobsStorage",
}

# Built-in role definition ids (docs/functions-host.md, Roles).
ROLE_KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ROLE_STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


def _stale(binary: Path) -> bool:
    if not binary.exists():
        return True
    # The list comes from src/settings.rs: rebuild when that file is newer than the binary.
    settings_rs = ROOT / "src" / "settings.rs"
    return settings_rs.exists() and settings_rs.stat().st_mtime > binary.stat().st_mtime


@functools.lru_cache(maxsize=None)
def handler_settings() -> tuple[dict[str, Any], ...]:
    """The settings list printed by `target/debug/handler --list-settings` (built first if missing or stale)."""
    if _stale(HANDLER_DEBUG):
        subprocess.run(["cargo", "build", "-q", "--bin", "handler"], cwd=ROOT, check=True)
    out = subprocess.run(
        [str(HANDLER_DEBUG), "--list-settings"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    items = json.loads(out)
    assert isinstance(items, list) and items, "handler --list-settings printed no settings"
    return tuple(items)


def setting(name: str) -> dict[str, Any]:
    for item in handler_settings():
        if item["name"] == name:
            return item
    raise KeyError(name)


def expected_app_setting_names() -> set[str]:
    """Every name the deployment must set (with both directions and direct Key Vault reads on), and no other."""
    return {s["name"] for s in handler_settings() if s.get("deployed", True)} - NOT_SET | HOST_SETTINGS


@functools.lru_cache(maxsize=None)
def parse_bicep(path: Path = MAIN_BICEP) -> dict[str, Any]:
    from pycep import BicepParser  # imported here so a missing package fails the tests, not the discovery

    return BicepParser().parse(file_path=path)


def bicepparam_as_bicep(text: str) -> str:
    """A .bicepparam file rewritten as Bicep that pycep-parser and tree-sitter-bicep understand: the `using` line is
    dropped and each `param x = v` becomes `var x = v` (neither tool knows the .bicepparam grammar)."""
    out = []
    for line in text.splitlines():
        if re.match(r"^\s*using\s", line):
            out.append("// " + line)
        else:
            out.append(re.sub(r"^(\s*)param(\s+\w+\s*=)", r"\1var\2", line))
    return "\n".join(out) + "\n"


def tree_sitter_errors(source: bytes) -> list[str]:
    """Syntax errors found by tree-sitter-bicep (scripts/install-dev-deps installs it)."""
    import tree_sitter_bicep
    from tree_sitter import Language, Parser

    tree = Parser(Language(tree_sitter_bicep.language())).parse(source)
    errors: list[str] = []

    def walk(node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            errors.append(f"{row + 1}:{col + 1} {node.type} {source[node.start_byte:node.end_byte][:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    if tree.root_node.has_error and not errors:
        errors.append("tree has errors")
    return errors


# --- expression helpers over pycep output --------------------------------------------------------------------------


def accessor_path(expr: Any) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'], or None when expr is not a plain property access."""
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, dict) and "operator" in expr and expr["operator"].get("type") == "property_accessor":
        ops = expr["operator"]["operands"]
        first = accessor_path(ops["operand_1"])
        rest = accessor_path(ops["operand_2"])
        if first is None or rest is None:
            return None
        return first + rest
    return None


def function_call(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and "function" in expr:
        return expr["function"]["type"], expr["function"].get("parameters") or {}
    return None


# Deployment functions with one value in Azure's public cloud (the template names no other cloud).
KNOWN_EXPRESSIONS = {"environment().suffixes.storage": "core.windows.net"}


class Evaluator:
    """Evaluates the few expression forms the template uses to choose its app settings and secrets, for given
    parameter values. Unknown expressions (resource properties, ...) come back as an `Opaque` holding the expression."""

    def __init__(self, doc: dict[str, Any], params: dict[str, Any]):
        self.doc = doc
        self.values: dict[str, Any] = {}
        for name, p in doc["parameters"].items():
            self.values[name] = params[name] if name in params else p.get("default")
        self.params = set(doc["parameters"])
        self.variables = doc["variables"]
        self.locals: dict[str, Any] = {}

    def __call__(self, expr: Any) -> Any:
        if isinstance(expr, str):
            if expr in self.locals:
                return self.locals[expr]
            if expr in self.params:
                return self.values[expr]
            if expr in self.variables:
                return self(self.variables[expr]["value"])
            if "${" in expr:
                return self.interpolate(expr)
            return expr
        if isinstance(expr, (bool, int, float)) or expr is None:
            return expr
        if isinstance(expr, list):
            return [self(e) for e in expr]
        if isinstance(expr, dict) and "loop_type" in expr:
            return self.loop(expr)
        if isinstance(expr, dict) and "operator" in expr:
            op = expr["operator"]["type"]
            ops = expr["operator"]["operands"]
            if op == "conditional":
                return self(ops["true_value"]) if self(ops["condition"]) else self(ops["false_value"])
            if op == "and":
                return bool(self(ops["operand_1"])) and bool(self(ops["operand_2"]))
            if op == "or":
                return bool(self(ops["operand_1"])) or bool(self(ops["operand_2"]))
            if op == "not":
                return not self(ops["bool_value"])
            if op == "equals":
                return self(ops["operand_1"]) == self(ops["operand_2"])
            if op == "not_equals":
                return self(ops["operand_1"]) != self(ops["operand_2"])
            if op == "index_accessor":
                container, index = self(ops["operand_1"]), self(ops["operand_2"])
                if isinstance(container, list) and isinstance(index, int) or isinstance(container, dict) and isinstance(index, str):
                    return container[index]
                return Opaque(expr)
            if op == "add":
                a, b = self(ops["operand_1"]), self(ops["operand_2"])
                return a + b if isinstance(a, int) and isinstance(b, int) else Opaque(expr)
            if op == "property_accessor":
                path = accessor_path(expr)
                if path and path[0] in self.variables:
                    value = self(path[0])
                    for key in path[1:]:
                        if not isinstance(value, dict):
                            return Opaque(expr)
                        value = value[key]
                    return value
                return Opaque(expr)
            return Opaque(expr)
        if isinstance(expr, dict) and "function" in expr:
            name, args = function_call(expr)
            if name == "concat":
                parts = [self(args[k]) for k in sorted(args, key=lambda k: int(k.split("_")[1]))]
                if all(isinstance(p, list) for p in parts):
                    return [x for p in parts for x in p]
                return Opaque(expr)
            if name == "empty":
                value = self(args["item_to_test"])
                return value in ("", None, [], {})
            return self.string_function(name, args, expr)
        if isinstance(expr, dict):
            return {k: self(v) for k, v in expr.items()}
        return Opaque(expr)


    def loop(self, expr: dict[str, Any]) -> Any:
        """`[for x in array: body]` (no index form, no filter)."""
        detail = expr["loop_type"]["detail"]
        items = self(detail["array_name"])
        if not isinstance(items, list) or expr.get("condition") is not None:
            return Opaque(expr)
        out = []
        saved = dict(self.locals)
        try:
            for item in items:
                self.locals[detail["item_name"]] = item
                out.append(self(expr["config"]))
        finally:
            self.locals = saved
        return out

    def string_function(self, name: str, args: dict[str, Any], expr: Any) -> Any:
        """The ARM string functions the name rules use, with ARM's semantics (split keeps empty pieces)."""
        values = {k: self(v) for k, v in args.items()}
        if any(isinstance(v, Opaque) for v in values.values()):
            return Opaque(expr)
        if name == "range":
            return list(range(values["start_index"], values["start_index"] + values["count"]))
        if name == "length":
            return len(values["arg_1"])
        if name == "to_lower":
            return values["string_to_change"].lower()
        if name == "first":
            return values["arg_1"][0] if values["arg_1"] else None
        if name == "contains":
            return values["item_to_find"] in values["container"]
        if name == "starts_with":
            return values["string_to_search"].startswith(values["string_to_find"])
        if name == "ends_with":
            return values["string_to_search"].endswith(values["string_to_find"])
        if name == "split":
            delimiters = values["delimiter"]
            delimiters = [delimiters] if isinstance(delimiters, str) else delimiters
            return re.split("|".join(re.escape(d) for d in delimiters), values["input_string"])
        return Opaque(expr)

    def interpolate(self, text: str) -> Any:
        """'a-${p}-b' with p a parameter or variable (or variable.key); Opaque when a part is not known."""
        out = ""
        for literal, ref in re.findall(r"([^$]*)(?:\$\{([^}]*)\})?", text):
            out += literal
            if not ref:
                continue
            if ref in KNOWN_EXPRESSIONS:
                out += KNOWN_EXPRESSIONS[ref]
                continue
            head, *rest = ref.split(".")
            if head not in self.params and head not in self.variables and head not in self.locals:
                return Opaque(text)
            value = self(head)
            for key in rest:
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, (str, int)):
                return Opaque(text)
            out += str(value)
        return out


class Opaque:
    def __init__(self, expr: Any):
        self.expr = expr

    def __repr__(self) -> str:
        return f"Opaque({self.expr!r})"


def app_settings_expression(doc: dict[str, Any]) -> Any:
    return site(doc)["config"]["properties"]["siteConfig"]["appSettings"]


def app_settings(doc: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """The app-settings array for the given parameter values (others at their defaults): a list of
    {'name': ..., 'value': <pycep expression>} items, where values are NOT evaluated."""
    ev = Evaluator(doc, params)
    expr = app_settings_expression(doc)
    # Evaluate structure only: concat/conditional/variables; leave each item's value as the raw expression.
    return _structure(ev, expr)


def _structure(ev: Evaluator, expr: Any) -> list[dict[str, Any]]:
    if isinstance(expr, str) and expr in ev.variables:
        return _structure(ev, ev.variables[expr]["value"])
    if isinstance(expr, list):
        for item in expr:
            assert isinstance(item, dict) and "name" in item and "value" in item, f"not a name/value item: {item!r}"
            assert isinstance(item["name"], str), f"app setting name is not a literal: {item['name']!r}"
        return list(expr)
    call = function_call(expr)
    if call and call[0] == "concat":
        args = call[1]
        out: list[dict[str, Any]] = []
        for key in sorted(args, key=lambda k: int(k.split("_")[1])):
            out.extend(_structure(ev, args[key]))
        return out
    if isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] == "conditional":
        ops = expr["operator"]["operands"]
        return _structure(ev, ops["true_value"] if ev(ops["condition"]) else ops["false_value"])
    raise AssertionError(f"app settings built in a way the test cannot follow: {expr!r}")


def all_app_setting_items(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item the array can hold: both directions and direct Key Vault reads on."""
    return app_settings(doc, directions="both", directKeyVaultReads=True)


def resources_of_type(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in doc["resources"].items() if r["type"].lower() == rtype.lower()}


def one_resource(doc: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(doc, rtype)
    assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource body, unwrapping a conditional resource (`= if (...) {...}`)."""
    config = resource["config"]
    if "condition" in config and "config" in config:
        return config["config"]
    return config


def condition(resource: dict[str, Any]) -> Any:
    config = resource["config"]
    return config["condition"] if "condition" in config and "config" in config else None


def site(doc: dict[str, Any]) -> dict[str, Any]:
    return one_resource(doc, "Microsoft.Web/sites")[1]


class TemplateTestCase(unittest.TestCase):
    """`infra/main.bicep` parsed once, with the resources most tests look at: the site, the vault, the storage."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = parse_bicep()
        cls.site_name, cls.site = one_resource(cls.doc, "Microsoft.Web/sites")
        cls.kv_name, cls.kv = one_resource(cls.doc, "Microsoft.KeyVault/vaults")
        cls.st_name, cls.st = one_resource(cls.doc, "Microsoft.Storage/storageAccounts")
