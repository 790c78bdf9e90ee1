"""Structure of infra/main.bicep and infra/main.bicepparam, checked offline with pycep-parser (and tree-sitter-bicep
for syntax when it is installed). Neither is the Bicep compiler: see docs/deploy.md, "What was not validated here"."""

from __future__ import annotations

import json
import re
import unittest
from typing import Any

from . import common as c

KV_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(VaultName=\$\{(\w+)\.name\};SecretName=\$\{secretNames\.(\w+)\}\)$")


def param_of(doc: dict[str, Any], expr: Any) -> str | None:
    """The parameter an app-setting value is built from: `p`, `string(p)` or `p ? 'true' : 'false'`."""
    params = doc["parameters"]
    if isinstance(expr, str) and expr in params:
        return expr
    call = c.function_call(expr)
    if call and call[0] == "string":
        return param_of(doc, call[1].get("value_to_convert"))
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "conditional":
        ops = expr["operator"]["operands"]
        if ops["true_value"] == "true" and ops["false_value"] == "false":
            return param_of(doc, ops["condition"])
    return None


def as_setting_text(value: Any) -> str:
    """A parameter default as the app-setting text it becomes (`string(300)` -> '300', bool -> 'true'/'false')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resource_ref(doc: dict[str, Any], expr: Any, prop: str) -> str | None:
    """The symbolic name X of `X.<prop>` (e.g. `uami.id`), when X is a resource."""
    path = c.accessor_path(expr)
    if path and len(path) == 2 and path[1] == prop and path[0] in doc["resources"]:
        return path[0]
    return None


class BicepTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.text = c.MAIN_BICEP.read_text()
        cls.doc = c.parse_bicep()
        cls.items = c.all_app_setting_items(cls.doc)
        cls.by_name = {item["name"]: item["value"] for item in cls.items}
        cls.uami_name, _ = c.one_resource(cls.doc, "Microsoft.ManagedIdentity/userAssignedIdentities")
        cls.kv_name, cls.kv = c.one_resource(cls.doc, "Microsoft.KeyVault/vaults")
        cls.st_name, cls.st = c.one_resource(cls.doc, "Microsoft.Storage/storageAccounts")
        cls.ai_name, cls.ai = c.one_resource(cls.doc, "Microsoft.Insights/components")
        cls.site_name, cls.site = c.one_resource(cls.doc, "Microsoft.Web/sites")
        cls.secret_names = c.Evaluator(cls.doc, {})("secretNames")

    def is_uami(self, expr: Any, prop: str) -> bool:
        path = c.accessor_path(expr)
        want = [self.uami_name] + prop.split(".")
        return path == want


class TestSyntax(BicepTestCase):
    def test_parses_with_pycep(self) -> None:
        for path in sorted(c.INFRA.glob("*.bicep")):
            with self.subTest(path=path.name):
                doc = c.parse_bicep(path)
                self.assertIn("resources", doc)

    def test_tree_sitter_finds_no_syntax_error(self) -> None:
        found_any = False
        for path in sorted(c.INFRA.glob("*.bicep")):
            errors = c.tree_sitter_errors(path.read_bytes())
            found_any = True
            self.assertEqual(errors, [], f"{path.name}: {errors}")
        self.assertTrue(found_any)

    def test_resource_group_scope_and_plain_resources(self) -> None:
        self.assertEqual(self.doc["globals"]["scope"]["value"], "resourceGroup")
        self.assertFalse(self.doc.get("modules"), "no modules: plain resources only")
        self.assertNotRegex(self.text, r"['\"]br[:/]", "no registry modules")
        for name, r in self.doc["resources"].items():
            with self.subTest(resource=name):
                self.assertRegex(r["api_version"], r"^\d{4}-\d{2}-\d{2}(-preview)?$")
                self.assertFalse(r["existing"], "every resource is created here")


class TestHosting(BicepTestCase):
    def test_plan_is_flex_consumption_linux(self) -> None:
        _, plan = c.one_resource(self.doc, "Microsoft.Web/serverfarms")
        cfg = c.body(plan)
        self.assertEqual(cfg["sku"], {"name": "FC1", "tier": "FlexConsumption"})
        self.assertIs(cfg["properties"]["reserved"], True)
        self.assertEqual(resource_ref(self.doc, c.body(self.site)["properties"]["serverFarmId"], "id"), _name_of(self.doc, plan))

    def test_runtime_is_custom_1_0(self) -> None:
        fac = c.body(self.site)["properties"]["functionAppConfig"]
        self.assertEqual(fac["runtime"], {"name": "custom", "version": "1.0"})
        self.assertIn(c.Evaluator(self.doc, {})(fac["scaleAndConcurrency"]["instanceMemoryMB"]), (512, 2048, 4096))

    def test_site_is_linux_https_only_tls12_no_ftp(self) -> None:
        cfg = c.body(self.site)
        self.assertIn("linux", cfg["kind"].split(","))
        self.assertIn("functionapp", cfg["kind"].split(","))
        props = cfg["properties"]
        self.assertIs(props["httpsOnly"], True)
        self.assertEqual(props["siteConfig"]["minTlsVersion"], "1.2")
        self.assertEqual(props["siteConfig"]["ftpsState"], "Disabled")
        self.assertGreaterEqual(self.site["api_version"], "2023-12-01", "Flex needs Microsoft.Web/sites@2023-12-01+")

    def test_deployment_storage_is_a_blob_container_reached_with_the_identity(self) -> None:
        storage = c.body(self.site)["properties"]["functionAppConfig"]["deployment"]["storage"]
        self.assertEqual(storage["type"], "blobContainer")
        self.assertEqual(storage["authentication"]["type"], "UserAssignedIdentity")
        self.assertTrue(self.is_uami(storage["authentication"]["userAssignedIdentityResourceId"], "id"))
        containers = c.resources_of_type(self.doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
        self.assertEqual(len(containers), 1)
        container_name = c.body(next(iter(containers.values())))["name"]
        self.assertEqual(
            storage["value"], f"${{{self.st_name}.properties.primaryEndpoints.blob}}${{{container_name}}}",
            "the deployment container URL is the storage account's blob endpoint + the container created here",
        )
        self.assertIn(container_name, self.doc["variables"])

    def test_identity_is_user_assigned_and_resolves_key_vault_references(self) -> None:
        cfg = c.body(self.site)
        self.assertEqual(cfg["identity"]["type"], "UserAssigned")
        self.assertEqual(list(cfg["identity"]["userAssignedIdentities"]), [f"'${{{self.uami_name}.id}}'"])
        self.assertTrue(self.is_uami(cfg["properties"]["keyVaultReferenceIdentity"], "id"))


class TestStorageVaultTelemetry(BicepTestCase):
    def test_storage_has_no_shared_keys_and_no_public_blobs(self) -> None:
        props = c.body(self.st)["properties"]
        self.assertIs(props["allowSharedKeyAccess"], False)
        self.assertIs(props["allowBlobPublicAccess"], False)
        self.assertEqual(props["minimumTlsVersion"], "TLS1_2")

    def test_state_table_is_created_and_named_like_the_setting(self) -> None:
        tables = c.resources_of_type(self.doc, "Microsoft.Storage/storageAccounts/tableServices/tables")
        self.assertEqual(len(tables), 1)
        table_name_expr = c.body(next(iter(tables.values())))["name"]
        self.assertIn(table_name_expr, self.doc["parameters"], "the table name is a parameter")
        self.assertEqual(self.by_name["STATE_TABLE_NAME"], table_name_expr, "STATE_TABLE_NAME comes from the same parameter")
        self.assertEqual(self.doc["parameters"][table_name_expr]["default"], c.setting("STATE_TABLE_NAME")["default"])

    def test_key_vault_uses_rbac_soft_delete_and_purge_protection(self) -> None:
        props = c.body(self.kv)["properties"]
        self.assertIs(props["enableRbacAuthorization"], True)
        self.assertIs(props.get("enableSoftDelete", True), True)
        self.assertIs(props["enablePurgeProtection"], True)
        self.assertNotIn("accessPolicies", props)

    def test_app_insights_has_local_auth_off_on_log_analytics(self) -> None:
        props = c.body(self.ai)["properties"]
        self.assertIs(props["DisableLocalAuth"], True)
        law_name, _ = c.one_resource(self.doc, "Microsoft.OperationalInsights/workspaces")
        self.assertEqual(resource_ref(self.doc, props["WorkspaceResourceId"], "id"), law_name)


class TestRoleAssignments(BicepTestCase):
    EXPECTED = {
        # role id -> type of the resource it is scoped to
        c.ROLE_KEY_VAULT_SECRETS_USER: "Microsoft.KeyVault/vaults",
        c.ROLE_STORAGE_BLOB_DATA_OWNER: "Microsoft.Storage/storageAccounts",
        c.ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR: "Microsoft.Storage/storageAccounts",
        # Durable work's queue trigger and enqueues (identity-based connection): least privilege for both.
        c.ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR: "Microsoft.Storage/storageAccounts",
        c.ROLE_MONITORING_METRICS_PUBLISHER: "Microsoft.Insights/components",
    }

    def assignments(self) -> dict[str, dict[str, Any]]:
        return c.resources_of_type(self.doc, "Microsoft.Authorization/roleAssignments")

    def test_exactly_these_roles_each_on_its_resource(self) -> None:
        ev = c.Evaluator(self.doc, {})
        got: dict[str, str] = {}
        for name, ra in self.assignments().items():
            with self.subTest(assignment=name):
                self.assertIsNone(c.condition(ra), "role assignments are unconditional")
                cfg = c.body(ra)
                call = c.function_call(cfg["properties"]["roleDefinitionId"])
                self.assertIsNotNone(call)
                self.assertEqual(call[0], "subscription_resource_id")
                self.assertEqual(call[1]["resource_type"], "Microsoft.Authorization/roleDefinitions")
                role = ev(call[1]["resource_name_1"])
                self.assertIsInstance(role, str)
                scope = cfg["scope"]
                self.assertIn(scope, self.doc["resources"], "scoped to a resource of this template")
                self.assertNotIn(role, got, "each role once")
                got[role] = self.doc["resources"][scope]["type"]
                # Deterministic name, tied to the scope, the identity and the role.
                gcall = c.function_call(cfg["name"])
                self.assertEqual(gcall[0], "guid")
                self.assertEqual(resource_ref(self.doc, gcall[1]["base_string"], "id"), scope)
        self.assertEqual(got, self.EXPECTED)

    def test_principal_is_the_user_assigned_identity(self) -> None:
        for name, ra in self.assignments().items():
            with self.subTest(assignment=name):
                props = c.body(ra)["properties"]
                self.assertTrue(self.is_uami(props["principalId"], "properties.principalId"))
                self.assertEqual(props["principalType"], "ServicePrincipal")

    def test_site_depends_on_every_role_assignment(self) -> None:
        depends = set(c.body(self.site).get("dependsOn") or [])
        missing = set(self.assignments()) - depends
        self.assertFalse(missing, f"the site must wait for {sorted(missing)}")

    def test_nothing_else_grants_access(self) -> None:
        for rtype in ("Microsoft.Authorization/roleDefinitions", "Microsoft.KeyVault/vaults/accessPolicies"):
            self.assertEqual(c.resources_of_type(self.doc, rtype), {})


class TestAppSettings(BicepTestCase):
    def test_names_equal_the_handler_settings_list(self) -> None:
        names = [item["name"] for item in self.items]
        self.assertEqual(len(names), len(set(names)), f"duplicates: {sorted(n for n in names if names.count(n) > 1)}")
        expected = c.expected_app_setting_names()
        self.assertEqual(
            set(names),
            expected,
            f"missing: {sorted(expected - set(names))}, not read by the binary: {sorted(set(names) - expected)}",
        )

    def test_no_flex_forbidden_or_connection_string_settings(self) -> None:
        for name in c.FORBIDDEN_SETTINGS | c.NOT_SET:
            self.assertNotIn(name, self.by_name)
        self.assertFalse([n for n in self.by_name if n.startswith("WEBSITE_CONTENT")])

    def test_every_secret_setting_is_a_key_vault_reference(self) -> None:
        secrets = [s for s in c.handler_settings() if s["secret"]]
        self.assertEqual(
            {s["name"] for s in secrets},
            {"CF_WEBHOOK_SECRET", "HALO_CLIENT_SECRET", "HALO_WEBHOOK_SECRET", "CF_SERVICE_ACCOUNT_CLIENT_SECRET", "STATUS_PAGE_KEY"},
        )
        for s in secrets:
            with self.subTest(setting=s["name"]):
                value = self.by_name[s["name"]]
                self.assertIsInstance(value, str)
                m = KV_REFERENCE.match(value)
                self.assertIsNotNone(m, f"{s['name']} = {value!r} is not @Microsoft.KeyVault(VaultName=...;SecretName=...)")
                self.assertEqual(m.group(1), self.kv_name, "the vault of this template")
                secret_name = self.secret_names[m.group(2)]
                # The same name the handler's direct reads use (the *_SECRET_NAME default).
                self.assertEqual(secret_name, c.setting(s["name"] + "_NAME")["default"])
                name_value = c.Evaluator(self.doc, {})(self.by_name[s["name"] + "_NAME"])
                self.assertEqual(name_value, secret_name)

    def test_non_secret_settings_come_from_parameters_with_the_handler_defaults(self) -> None:
        infra = {
            "AZURE_CLIENT_ID", "KEY_VAULT_URI", "STATE_TABLE_NAME",
            "StateStorage__tableServiceUri", "StateStorage__credential", "StateStorage__clientId",
            "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__queueServiceUri",
            "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
        }
        # A secret's Key Vault name setting (<SECRET>_NAME) comes from secretNames, not from a parameter.
        secret_names = {s["name"] + "_NAME" for s in c.handler_settings() if s["secret"]}
        for s in c.handler_settings():
            name = s["name"]
            if s["secret"] or not s.get("deployed", True) or name in infra or name in c.NOT_SET or name in secret_names:
                continue
            with self.subTest(setting=name):
                param = param_of(self.doc, self.by_name[name])
                self.assertIsNotNone(param, f"{name} is not set from a parameter: {self.by_name[name]!r}")
                p = self.doc["parameters"][param]
                self.assertNotIn("secure", [d["type"] for d in p["decorators"]])
                if s["default"] is not None:
                    self.assertEqual(as_setting_text(p["default"]), s["default"], f"default of parameter {param}")
                elif s["required"]:
                    # Required for its direction only: '' so a one-direction deployment can leave it out.
                    self.assertIn(p["default"], (None, ""), f"parameter {param}")
                else:
                    self.assertEqual(p["default"], "", f"optional {name} without a default stays empty (unset)")

    def test_identity_based_storage_and_telemetry(self) -> None:
        for prefix in ("StateStorage", "AzureWebJobsStorage"):
            with self.subTest(prefix=prefix):
                self.assertEqual(self.by_name[f"{prefix}__credential"], "managedidentity")
                self.assertTrue(self.is_uami(self.by_name[f"{prefix}__clientId"], "properties.clientId"))
                self.assertEqual(
                    c.accessor_path(self.by_name[f"{prefix}__tableServiceUri"]),
                    [self.st_name, "properties", "primaryEndpoints", "table"],
                )
        for svc in ("blob", "queue"):
            self.assertEqual(
                c.accessor_path(self.by_name[f"AzureWebJobsStorage__{svc}ServiceUri"]),
                [self.st_name, "properties", "primaryEndpoints", svc],
            )
        self.assertTrue(self.is_uami(self.by_name["AZURE_CLIENT_ID"], "properties.clientId"))
        self.assertEqual(
            c.accessor_path(self.by_name["APPLICATIONINSIGHTS_CONNECTION_STRING"]),
            [self.ai_name, "properties", "ConnectionString"],
        )
        self.assertEqual(
            self.by_name["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"],
            f"ClientId=${{{self.uami_name}.properties.clientId}};Authorization=AAD",
        )
        self.assertEqual(c.accessor_path(self.by_name["KEY_VAULT_URI"]), [self.kv_name, "properties", "vaultUri"])

    def test_key_vault_uri_only_with_direct_reads(self) -> None:
        off = {i["name"] for i in c.app_settings(self.doc, directKeyVaultReads=False)}
        on = {i["name"] for i in c.app_settings(self.doc, directKeyVaultReads=True)}
        self.assertEqual(on - off, {"KEY_VAULT_URI"})
        self.assertIs(self.doc["parameters"]["directKeyVaultReads"]["default"], False)
        for name in ("KEY_VAULT_REFRESH_SECONDS", "SECRET_ROTATION_GRACE_SECONDS", "CF_WEBHOOK_SECRET_NAME"):
            self.assertIn(name, off)


class TestDirections(BicepTestCase):
    def area_names(self, area: str) -> set[str]:
        names = {s["name"] for s in c.handler_settings() if s["area"] == area}
        # A secret's Key Vault name setting goes with the secret.
        return names | {n + "_NAME" for n in names if c.setting(n)["secret"]}

    def test_parameter(self) -> None:
        p = self.doc["parameters"]["directions"]
        self.assertEqual(p["default"], "both")
        allowed = [d["argument"] for d in p["decorators"] if d["type"] == "allowed"]
        self.assertEqual(allowed, [["both", "cf-webhook", "halo-webhook"]])

    def test_each_direction_leaves_out_the_other(self) -> None:
        full = c.expected_app_setting_names() - {"KEY_VAULT_URI"}
        outbound, inbound = self.area_names("cf-webhook"), self.area_names("halo-webhook")
        self.assertTrue(outbound and inbound)
        for direction, expected in (
            ("both", full),
            ("cf-webhook", full - inbound),
            ("halo-webhook", full - outbound),
        ):
            with self.subTest(directions=direction):
                names = {i["name"] for i in c.app_settings(self.doc, directions=direction)}
                self.assertEqual(names, expected)

    def test_secrets_are_created_only_when_given_and_for_deployed_directions(self) -> None:
        secrets = c.resources_of_type(self.doc, "Microsoft.KeyVault/vaults/secrets")
        ev0 = c.Evaluator(self.doc, {})
        by_param: dict[str, str] = {}
        for name, r in secrets.items():
            with self.subTest(secret=name):
                self.assertIsNotNone(c.condition(r), "created only when a value is given")
                cfg = c.body(r)
                self.assertEqual(cfg["parent"], self.kv_name)
                value_param = cfg["properties"]["value"]
                p = self.doc["parameters"][value_param]
                self.assertIn("secure", [d["type"] for d in p["decorators"]], f"{value_param} is @secure()")
                self.assertEqual(p["default"], "")
                by_param[value_param] = ev0(cfg["name"])
        self.assertEqual(sorted(by_param.values()), sorted(self.secret_names.values()))
        given = {p: "x" for p in by_param}
        nothing = {p: "" for p in by_param}
        # The status page serves both directions: its key is created whatever is deployed.
        for direction, created in (
            ("both", {"cf-webhook-secret", "halo-client-secret", "halo-webhook-secret", "cf-service-account-client-secret", "status-page-key"}),
            ("cf-webhook", {"cf-webhook-secret", "halo-client-secret", "status-page-key"}),
            ("halo-webhook", {"halo-client-secret", "halo-webhook-secret", "cf-service-account-client-secret", "status-page-key"}),
        ):
            with self.subTest(directions=direction):
                ev = c.Evaluator(self.doc, {"directions": direction, **given})
                got = {by_param[c.body(r)["properties"]["value"]] for r in secrets.values() if ev(c.condition(r)) is True}
                self.assertEqual(got, created)
                ev = c.Evaluator(self.doc, {"directions": direction, **nothing})
                self.assertFalse([n for n, r in secrets.items() if ev(c.condition(r)) is not False])


class TestOutputs(BicepTestCase):
    HTTP_FUNCTIONS = ("cf-webhook", "halo-webhook", "status")

    def triggers(self) -> dict[str, dict]:
        out = {}
        for fn in self.HTTP_FUNCTIONS:
            bindings = json.loads((c.ROOT / fn / "function.json").read_text())["bindings"]
            out[fn] = next(b for b in bindings if b["type"] == "httpTrigger")
        return out

    def routes(self) -> dict[str, str]:
        host = json.loads((c.ROOT / "host.json").read_text())
        prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        # An optional catch-all tail (`status/{*action}`) is not part of the URL a person opens.
        return {fn: f"/{prefix}/" + re.sub(r"/\{\*\w+\}$", "", t.get("route", fn)) for fn, t in self.triggers().items()}

    def test_webhook_urls_match_the_function_routes(self) -> None:
        outputs = self.doc["outputs"]
        routes = self.routes()
        host = f"https://${{{self.site_name}.properties.defaultHostName}}"
        self.assertEqual(outputs["cfWebhookUrl"]["value"], host + routes["cf-webhook"])
        self.assertEqual(outputs["haloWebhookUrl"]["value"], host + routes["halo-webhook"])
        self.assertEqual(outputs["statusPageUrl"]["value"], host + routes["status"])
        self.assertEqual(routes["status"], "/api/status")
        for key in ("cfWebhookUrl", "haloWebhookUrl", "statusPageUrl"):
            self.assertNotIn("code=", outputs[key]["value"], "no keys in outputs")

    def test_only_the_status_page_is_anonymous(self) -> None:
        # The status page checks STATUS_PAGE_KEY itself (a host key in its URL would stay in browser history and in
        # its forms); every other HTTP function needs its function key.
        for fn, trigger in self.triggers().items():
            with self.subTest(function=fn):
                self.assertEqual(trigger["authLevel"], "anonymous" if fn == "status" else "function")
        self.assertIn("get", self.triggers()["status"]["methods"])
        others = sorted(p.parent.name for p in c.ROOT.glob("*/function.json")
                        if p.parent.name not in self.HTTP_FUNCTIONS
                        and any(b["type"] == "httpTrigger" for b in json.loads(p.read_text())["bindings"]))
        self.assertEqual(others, [], "an HTTP function this test does not know")

    def test_app_name_and_key_commands(self) -> None:
        outputs = self.doc["outputs"]
        self.assertEqual(c.accessor_path(outputs["functionAppName"]["value"]), [self.site_name, "name"])
        for key, fn in (("cfWebhookKeyCommand", "cf-webhook"), ("haloWebhookKeyCommand", "halo-webhook")):
            cmd = outputs[key]["value"]
            self.assertTrue(cmd.startswith("az functionapp function keys list "), cmd)
            self.assertIn(f"--function-name {fn}", cmd)
            self.assertIn(f"-n ${{{self.site_name}.name}}", cmd)
            self.assertIn("-g ${resourceGroup().name}", cmd)


class TestBicepParam(BicepTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.param_text = c.MAIN_BICEPPARAM.read_text()
        from pycep import BicepParser

        cls.param_values = {
            name: v["value"]
            for name, v in BicepParser().parse(text=c.bicepparam_as_bicep(cls.param_text))["variables"].items()
        }

    def test_uses_main_bicep_and_parses(self) -> None:
        self.assertRegex(self.param_text, r"(?m)^using '\./main\.bicep'\s*$")
        errors = c.tree_sitter_errors(c.bicepparam_as_bicep(self.param_text).encode())
        self.assertEqual(errors, [])
        unknown = set(self.param_values) - set(self.doc["parameters"])
        self.assertFalse(unknown, f"parameters the template does not declare: {sorted(unknown)}")

    def test_names_every_required_parameter(self) -> None:
        required = {n for n, p in self.doc["parameters"].items() if p["default"] is None}
        # Settings the handler requires, whose parameters have '' defaults because only one direction needs them.
        for s in c.handler_settings():
            if s["required"] and not s["secret"]:
                param = param_of(self.doc, self.by_name[s["name"]])
                self.assertIsNotNone(param, s["name"])
                required.add(param)
        self.assertIn("appName", required)
        missing = required - set(self.param_values)
        self.assertFalse(missing, f"main.bicepparam does not name {sorted(missing)}")

    def test_placeholders_only(self) -> None:
        for name, value in self.param_values.items():
            p = self.doc["parameters"][name]
            secure = "secure" in [d["type"] for d in p["decorators"]]
            with self.subTest(param=name):
                if secure:
                    call = c.function_call(value)
                    self.assertIsNotNone(call, f"secret {name} must not have a value in the file")
                    self.assertEqual(call[0], "readEnvironmentVariable")
                    self.assertEqual(call[1].get("arg_2"), "", "read from the environment, empty when unset")
                    continue
                if isinstance(value, (bool, int)):
                    continue
                if isinstance(value, (list, dict)):
                    self.assertEqual(value, p["default"], f"{name}: a list or object here is the template default")
                    continue
                self.assertIsInstance(value, str)
                allowed = [a for d in p["decorators"] if d["type"] == "allowed" for a in d["argument"]]
                self.assertTrue(
                    re.fullmatch(r"<[^<>]+>", value) or value == p["default"] or value in allowed or value == "",
                    f"{name} = {value!r}: use a '<...>' placeholder, the template default or an allowed value",
                )
        # Nothing that looks like a real credential or id anywhere in the file, comments included.
        # Placeholders may hold example URLs: look outside them, comments included.
        outside = re.sub(r"<[^<>']*>", "<>", self.param_text)
        tokens = re.findall(r"[A-Za-z0-9+/=_~.-]{24,}", outside)
        tokens = [t for t in tokens if re.search(r"\d", t) and re.search(r"[A-Za-z]", t)]
        self.assertEqual(tokens, [], "no long token-like strings")
        self.assertNotRegex(
            outside, r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "no GUIDs"
        )


def _name_of(doc: dict[str, Any], resource: dict[str, Any]) -> str:
    return next(n for n, r in doc["resources"].items() if r is resource)


if __name__ == "__main__":
    unittest.main()
