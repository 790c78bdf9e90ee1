"""networkMode: 'public' (the default) and 'private' (virtual network integration, private endpoints for blob, queue,
table and vault with their private DNS zones, public network access off on storage and Key Vault)."""

from __future__ import annotations

import unittest
from typing import Any

from . import common as c

PRIVATE_ENDPOINTS = {
    # group id -> (private link target type, private DNS zone)
    "blob": ("Microsoft.Storage/storageAccounts", "privatelink.blob.core.windows.net"),
    "queue": ("Microsoft.Storage/storageAccounts", "privatelink.queue.core.windows.net"),
    "table": ("Microsoft.Storage/storageAccounts", "privatelink.table.core.windows.net"),
    "vault": ("Microsoft.KeyVault/vaults", "privatelink.vaultcore.azure.net"),
}
PRIVATE_ONLY_TYPES = {
    "Microsoft.Network/virtualNetworks",
    "Microsoft.Network/networkSecurityGroups",
    "Microsoft.Network/natGateways",
    "Microsoft.Network/publicIPAddresses",
    "Microsoft.Network/privateEndpoints",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
    "Microsoft.Network/privateDnsZones",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
}


class NetworkTestCase(c.TemplateTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.vnet_name, cls.vnet = c.one_resource(cls.doc, "Microsoft.Network/virtualNetworks")

    def ev(self, mode: str) -> c.Evaluator:
        return c.Evaluator(self.doc, {"networkMode": mode, "appName": "bridge"})

    def deployed(self, mode: str) -> dict[str, dict[str, Any]]:
        ev = self.ev(mode)
        return {n: r for n, r in self.doc["resources"].items() if c.condition(r) is None or ev(c.condition(r)) is True}


class TestModeParameter(NetworkTestCase):
    def test_public_is_the_default(self) -> None:
        p = self.doc["parameters"]["networkMode"]
        self.assertEqual(p["default"], "public")
        self.assertEqual([d["argument"] for d in p["decorators"] if d["type"] == "allowed"], [["public", "private"]])

    def test_public_mode_creates_no_network_resource(self) -> None:
        extra = {n for n, r in self.deployed("public").items() if r["type"] in PRIVATE_ONLY_TYPES}
        self.assertEqual(extra, set())

    def test_private_mode_creates_them_all(self) -> None:
        types = {r["type"] for r in self.deployed("private").values()}
        self.assertLessEqual(PRIVATE_ONLY_TYPES, types)
        # Every network resource depends on the mode, and nothing else does (apart from the secrets and the action group).
        for n, r in self.doc["resources"].items():
            if r["type"] in PRIVATE_ONLY_TYPES:
                self.assertEqual(c.condition(r), "privateNetworking", n)


class TestPublicNetworkAccess(NetworkTestCase):
    def props(self, resource: dict[str, Any], mode: str) -> dict[str, Any]:
        return self.ev(mode)(c.body(resource)["properties"])

    def test_storage(self) -> None:
        private, public = self.props(self.st, "private"), self.props(self.st, "public")
        self.assertEqual(private["publicNetworkAccess"], "Disabled")
        self.assertEqual(private["networkAcls"], {"defaultAction": "Deny", "bypass": "None"})
        self.assertEqual(public["publicNetworkAccess"], "Enabled")
        for props in (private, public):
            self.assertIs(props["allowSharedKeyAccess"], False)
            self.assertIs(props["allowBlobPublicAccess"], False)

    def test_key_vault(self) -> None:
        private, public = self.props(self.kv, "private"), self.props(self.kv, "public")
        self.assertEqual(private["publicNetworkAccess"], "Disabled")
        self.assertEqual(private["networkAcls"]["defaultAction"], "Deny")
        self.assertEqual(public["publicNetworkAccess"], "Enabled")
        for props in (private, public):
            self.assertIs(props["enableRbacAuthorization"], True)


class TestVirtualNetworkIntegration(NetworkTestCase):
    def subnets(self) -> dict[str, dict[str, Any]]:
        ev = self.ev("private")
        return {ev(s["name"]): s["properties"] for s in c.body(self.vnet)["properties"]["subnets"]}

    def test_site_joins_the_delegated_subnet_only_in_private_mode(self) -> None:
        expr = c.body(self.site)["properties"]["virtualNetworkSubnetId"]
        self.assertIsNone(self.ev("public")(expr))
        self.assertEqual(expr["operator"]["operands"]["true_value"], "appSubnetId")
        # appSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', <this vnet>, <its app subnet>)
        name, args = c.function_call(self.doc["variables"]["appSubnetId"]["value"])
        ev = self.ev("private")
        self.assertEqual(name, "resource_id")
        self.assertEqual(args["resource_type"], "Microsoft.Network/virtualNetworks/subnets")
        self.assertEqual(ev(args["resource_name_1"]), ev(c.body(self.vnet)["name"]))
        self.assertEqual(ev(args["resource_name_2"]), "snet-app")
        self.assertIn("snet-app", self.subnets())

    def test_app_subnet_is_delegated_to_microsoft_app_environments(self) -> None:
        app = self.subnets()["snet-app"]
        self.assertEqual([d["properties"]["serviceName"] for d in app["delegations"]], ["Microsoft.App/environments"])
        self.assertEqual(c.accessor_path(app["natGateway"]["id"]), ["natGateway", "id"])
        self.assertIs(app["defaultOutboundAccess"], False)

    def test_every_subnet_has_a_network_security_group(self) -> None:
        for name, props in self.subnets().items():
            with self.subTest(subnet=name):
                path = c.accessor_path(props["networkSecurityGroup"]["id"])
                self.assertEqual(self.doc["resources"][path[0]]["type"], "Microsoft.Network/networkSecurityGroups")

    def test_nat_gateway_has_a_static_standard_address_and_is_an_output(self) -> None:
        _, pip = c.one_resource(self.doc, "Microsoft.Network/publicIPAddresses")
        self.assertEqual(c.body(pip)["properties"]["publicIPAllocationMethod"], "Static")
        self.assertEqual(c.body(pip)["sku"], {"name": "Standard"})
        out = self.doc["outputs"]["outboundIpAddress"]["value"]
        self.assertEqual(self.ev("public")(out), "")


class TestPrivateEndpoints(NetworkTestCase):
    def test_one_endpoint_per_service_with_its_zone(self) -> None:
        ev = self.ev("private")
        endpoints = c.resources_of_type(self.doc, "Microsoft.Network/privateEndpoints")
        groups = c.resources_of_type(self.doc, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
        zones = c.resources_of_type(self.doc, "Microsoft.Network/privateDnsZones")
        links = c.resources_of_type(self.doc, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
        seen = set()
        for pe_name, pe in endpoints.items():
            props = c.body(pe)["properties"]
            (conn,) = props["privateLinkServiceConnections"]
            (group_id,) = conn["properties"]["groupIds"]
            seen.add(group_id)
            with self.subTest(endpoint=pe_name, group=group_id):
                target_type, zone_name = PRIVATE_ENDPOINTS[group_id]
                target = c.accessor_path(conn["properties"]["privateLinkServiceId"])
                self.assertEqual(target[1:], ["id"])
                self.assertEqual(self.doc["resources"][target[0]]["type"], target_type)
                self.assertEqual(props["subnet"]["id"], "privateEndpointSubnetId")
                # Its DNS zone group points at the zone of that service, and the zone is linked to the vnet.
                (group,) = [g for g in groups.values() if c.body(g)["parent"] == pe_name]
                (cfg,) = c.body(group)["properties"]["privateDnsZoneConfigs"]
                zone_sym = c.accessor_path(cfg["properties"]["privateDnsZoneId"])[0]
                self.assertEqual(ev(c.body(zones[zone_sym])["name"]), zone_name)
                (link,) = [l for l in links.values() if c.body(l)["parent"] == zone_sym]
                self.assertEqual(c.accessor_path(c.body(link)["properties"]["virtualNetwork"]["id"]), [self.vnet_name, "id"])
                self.assertIs(c.body(link)["properties"]["registrationEnabled"], False)
                self.assertEqual(c.body(zones[zone_sym])["location"], "global")
        self.assertEqual(seen, set(PRIVATE_ENDPOINTS))

    def test_site_waits_for_the_dns_records(self) -> None:
        depends = set(c.body(self.site)["dependsOn"])
        for rtype in ("Microsoft.Network/privateEndpoints/privateDnsZoneGroups", "Microsoft.Network/privateDnsZones/virtualNetworkLinks"):
            self.assertLessEqual(set(c.resources_of_type(self.doc, rtype)), depends, rtype)

    def test_app_settings_do_not_change_with_the_mode(self) -> None:
        # The storage endpoints keep their public names; the private DNS zones answer them inside the network.
        public = c.app_settings(self.doc, networkMode="public")
        private = c.app_settings(self.doc, networkMode="private")
        self.assertEqual(public, private)


if __name__ == "__main__":
    unittest.main()
