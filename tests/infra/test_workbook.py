"""The run-history workbook (infra/workbook.json, deployed by infra/main.bicep), the KQL of docs/operations.md, the
status page's settings, and that both read the fields the handler really logs.

The handler writes one line per delivery to stdout, which the Functions host sends to Application Insights `traces`
(the whole line is `message`), in tracing-subscriber's fmt format without a target:
  2026-12-04T18:41:21.123456Z  INFO request route="cf-webhook" status=200 outcome="created" ... duration_ms=12
  2026-12-04T18:41:21.123456Z  WARN invocation route="work-items" status=500 outcome="retried" ... detail="..."
Every query parses those fields with KQL's parse-kv. Nothing here runs KQL: the queries are checked as text (the
fields they parse and use, the parse-kv options, the outcome and route values they compare with), not against Azure.
"""

from __future__ import annotations

import json
import re
import unittest
from typing import Any

from . import common as c

WORKBOOK_JSON = c.INFRA / "workbook.json"
OPERATIONS_MD = c.ROOT / "docs" / "operations.md"
SRC = c.ROOT / "src"

# The fields of the handler's delivery lines and the KQL type each is parsed as (all optional in a line except
# route, outcome and duration_ms).
FIELDS = {
    "route": "string",
    "status": "long",
    "outcome": "string",
    "correlation_id": "string",
    "event_id": "string",
    "reference": "string",
    "ticket_id": "long",
    "client_id": "long",
    "work_id": "string",
    "attempts": "long",
    "halo_calls": "long",
    "cf_calls": "long",
    "duration_ms": "long",
    "detail": "string",
}
ROUTES = ["cf-webhook", "halo-webhook", "work-items", "dead-letters"]
OUTCOMES = [
    "created", "updated", "duplicate", "test", "ignored", "processed", "queued", "retried", "completed",
    "dead-lettered", "uncertain", "rejected", "unavailable",
]
# The handler's delivery lines: the message tracing prints before the fields.
LINE_MESSAGES = ("request", "invocation")
PARSE_KV_OPTIONS = "pair_delimiter=' ', kv_delimiter='=', quote='\"', escape='\\\\'"

# Columns of Application Insights `traces` a query may read besides the parsed fields.
TRACES_COLUMNS = {"timestamp", "message", "severityLevel", "cloud_RoleInstance", "cloud_RoleName", "operation_Name"}
# KQL words (tabular operators, functions, keywords, types, parse-kv options) the queries may use. Anything else a
# query names must be a parsed field, a `traces` column or a name the query binds itself (`x = ...`, `let x`).
KQL_WORDS = {
    "traces", "where", "has", "has_any", "matches", "regex", "contains", "startswith", "endswith", "in", "and",
    "or", "not", "parse-kv", "as", "with", "pair_delimiter", "kv_delimiter", "quote", "escape", "string", "long",
    "int", "datetime", "summarize", "count", "countif", "dcount", "by", "bin", "project", "project-away", "extend",
    "order", "sort", "asc", "desc", "top", "take", "distinct", "arg_max", "arg_min", "max", "min", "make_set",
    "sum", "avg", "render", "timechart", "columnchart",
    "isnotempty", "isempty", "tostring", "tolong", "toint", "ago", "now", "case", "iff", "strcat", "let", "true",
    "false", "join", "kind", "leftanti", "inner", "on",
}


def strip_kql(kql: str) -> str:
    """The KQL with its comments, string literals and workbook parameters ({Name} / {Name:format}) blanked."""
    kql = re.sub(r"//[^\n]*", " ", kql)
    kql = re.sub(r"@\"[^\"]*\"|@'[^']*'", ' "" ', kql)
    kql = re.sub(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", ' "" ', kql)
    return re.sub(r"\{[A-Za-z]\w*(?::[\w$.]+)?\}", " 0 ", kql)


def parse_kv_clauses(kql: str) -> list[tuple[str, dict[str, str], str]]:
    """Each `parse-kv <column> as (<key>: <type>, ...) with (<options>)` of the query: (column, keys, options)."""
    out = []
    # The with-list ends its line (a `let` ends it with `;`).
    for m in re.finditer(r"parse-kv\s+(\w+)\s+as\s*\(([^)]*)\)\s*with\s*\((.*?)\)\s*;?[ \t]*(?:\n|$)", kql, re.S):
        keys = {}
        for part in m.group(2).split(","):
            name, _, kind = part.partition(":")
            keys[name.strip()] = kind.strip()
        out.append((m.group(1), keys, " ".join(m.group(3).split())))
    return out


def identifiers(kql: str) -> set[str]:
    stripped = strip_kql(kql)
    return set(re.findall(r"(?<![\w.])[A-Za-z_]\w*(?:-[A-Za-z_]\w*)*", stripped))


def bound_names(kql: str) -> set[str]:
    """Names the query binds: `let x =`, and `x = <expr>` in extend / summarize / project."""
    stripped = strip_kql(kql)
    return set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*=(?!=)", stripped))


def compared_values(kql: str, column: str) -> set[str]:
    """String values the query compares `column` with (`==`, `!=`, `in (...)`, `!in (...)`)."""
    kql = re.sub(r"//[^\n]*", " ", kql)
    values = set(re.findall(rf"(?<![\w.]){column}\s*[!=]=\s*\"([^\"]*)\"", kql))
    for group in re.findall(rf"(?<![\w.]){column}\s*!?in\s*\(([^)]*)\)", kql):
        values |= set(re.findall(r"\"([^\"]*)\"", group))
    return values


def kql_problems(kql: str) -> list[str]:
    """What is wrong with one query: not reading the delivery lines with parse-kv as the handler writes them, or
    naming a field that is not one of FIELDS, or an outcome or route value that does not exist."""
    problems = []
    clauses = parse_kv_clauses(kql)
    if not clauses:
        return ["no parse-kv"]
    parsed: set[str] = set()
    for column, keys, options in clauses:
        if column != "message":
            problems.append(f"parse-kv of {column}, not message")
        if options != PARSE_KV_OPTIONS:
            problems.append(f"parse-kv options {options!r}, not {PARSE_KV_OPTIONS!r}")
        for key, kind in keys.items():
            if key not in FIELDS:
                problems.append(f"parses {key!r}, which is not a field of the handler's lines")
            elif kind != FIELDS[key]:
                problems.append(f"parses {key} as {kind}, not {FIELDS[key]}")
        parsed |= set(keys)
    if not re.search(r"(?<![\w.])traces\b", kql):
        problems.append("does not read traces")
    if not all(re.search(rf"\b{m}\b", kql) for m in LINE_MESSAGES):
        problems.append(f"does not pick the delivery lines ({' / '.join(LINE_MESSAGES)})")
    known = KQL_WORDS | TRACES_COLUMNS | parsed | bound_names(kql)
    unknown = sorted(identifiers(kql) - known)
    if unknown:
        problems.append(f"names {unknown}: neither a parsed field, a traces column, a name it binds nor a known KQL word")
    used_fields = (identifiers(kql) & set(FIELDS)) - parsed
    if used_fields:
        problems.append(f"uses {sorted(used_fields)} without parsing them")
    bad_outcomes = compared_values(kql, "outcome") - set(OUTCOMES)
    if bad_outcomes:
        problems.append(f"compares outcome with {sorted(bad_outcomes)}, which the handler never logs")
    bad_routes = compared_values(kql, "route") - set(ROUTES)
    if bad_routes:
        problems.append(f"compares route with {sorted(bad_routes)}, which is not a function")
    return problems


def load_workbook() -> dict[str, Any]:
    return json.loads(WORKBOOK_JSON.read_text())


def query_items(workbook: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in workbook["items"] if i["type"] == 3]


def parameters(workbook: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for item in workbook["items"]:
        if item["type"] == 9:
            for p in item["content"]["parameters"]:
                out[p["name"]] = p
    return out


class TestKqlChecker(unittest.TestCase):
    """The checker itself finds what it is meant to (so a passing workbook test means something)."""

    GOOD = (
        'traces | where message matches regex @"^\\S+\\s+(INFO|WARN)\\s+(request|invocation)\\s"\n'
        "| parse-kv message as (outcome: string, work_id: string) with (" + PARSE_KV_OPTIONS + ")\n"
        '| where outcome in ("queued", "retried") | summarize n = count() by work_id'
    )

    def test_a_good_query_passes(self) -> None:
        self.assertEqual(kql_problems(self.GOOD), [])

    def test_each_kind_of_mistake_is_found(self) -> None:
        for bad, problem in (
            (self.GOOD.replace("work_id: string", "workid: string"), "workid"),
            (self.GOOD.replace("outcome: string", "outcome: long"), "as long"),
            (self.GOOD.replace("escape='\\\\'", "escape='/'"), "options"),
            (self.GOOD.replace('"retried"', '"retry"'), "retry"),
            (self.GOOD.replace("by work_id", "by ticket_id"), "ticket_id"),
            (self.GOOD.replace("by work_id", "by ticketid"), "ticketid"),
            (self.GOOD.replace("parse-kv", "parse"), "no parse-kv"),
            (self.GOOD.replace("(request|invocation)", "(request)"), "delivery lines"),
        ):
            with self.subTest(problem=problem):
                self.assertTrue([p for p in kql_problems(bad) if problem in p], kql_problems(bad))


class TestWorkbookResource(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = c.parse_bicep()
        cls.name, cls.res = c.one_resource(cls.doc, "Microsoft.Insights/workbooks")
        cls.cfg = c.body(cls.res)
        cls.ai_name, _ = c.one_resource(cls.doc, "Microsoft.Insights/components")

    def test_shared_workbook_of_application_insights(self) -> None:
        self.assertIsNone(c.condition(self.res), "always deployed")
        self.assertEqual(self.cfg["kind"], "shared")
        self.assertGreaterEqual(self.res["api_version"], "2021-08-01", "API versions with sourceId and displayName")
        props = self.cfg["properties"]
        self.assertEqual(props["category"], "workbook", "the Workbooks gallery of the resource")
        self.assertEqual(c.accessor_path(props["sourceId"]), [self.ai_name, "id"], "listed under Application Insights")
        self.assertEqual(props["version"], "Notebook/1.0")
        self.assertEqual(c.Evaluator(self.doc, {"appName": "bridge"})(props["displayName"]), "Bridge deliveries (bridge)")
        self.assertEqual(self.cfg["location"], "location")
        self.assertEqual(self.cfg["tags"], "tags")

    def test_content_is_loaded_from_workbook_json(self) -> None:
        call = c.function_call(self.cfg["properties"]["serializedData"])
        self.assertEqual(call, ("load_text_content", {"file_path": "workbook.json", "encoding": None}))

    def test_name_is_a_guid_of_the_resource_group_and_the_app(self) -> None:
        name, args = c.function_call(self.cfg["name"])
        self.assertEqual(name, "guid")
        base = args["base_string"]["operator"]["operands"]
        self.assertEqual(c.function_call(base["operand_1"])[0], "resource_group")
        self.assertEqual(base["operand_2"], "id")
        self.assertIn("appName", [v for k, v in args.items() if k.startswith("extra_string")])


class TestWorkbookContent(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workbook = load_workbook()
        cls.queries = query_items(cls.workbook)
        cls.params = parameters(cls.workbook)

    def test_is_a_notebook_of_text_query_and_parameter_items(self) -> None:
        self.assertEqual(self.workbook["version"], "Notebook/1.0")
        self.assertLess(len(WORKBOOK_JSON.read_text()), 131072, "Bicep's loadTextContent takes at most 131,072 characters")
        types = [i["type"] for i in self.workbook["items"]]
        self.assertLessEqual(set(types), {1, 3, 9})
        self.assertEqual(types[0], 1, "starts with what it shows")
        names = [i["name"] for i in self.workbook["items"]]
        self.assertEqual(len(names), len(set(names)), "item names are unique")
        for item in self.workbook["items"]:
            with self.subTest(item=item["name"]):
                if item["type"] == 1:
                    self.assertTrue(item["content"]["json"].strip())
                if item["type"] in (3, 9):
                    self.assertEqual(item["content"]["version"], "KqlItem/1.0" if item["type"] == 3 else "KqlParameterItem/1.0")

    def test_the_parameters(self) -> None:
        self.assertEqual(set(self.params), {"TimeRange", "Route", "Outcome", "Reference", "TicketId"})
        ids = [p["id"] for p in self.params.values()]
        self.assertEqual(len(ids), len(set(ids)))
        time = self.params["TimeRange"]
        self.assertEqual(time["type"], 4, "time range picker")
        self.assertEqual(time["value"], {"durationMs": 24 * 3600 * 1000}, "24 hours by default")
        for name, values in (("Route", ROUTES), ("Outcome", OUTCOMES)):
            with self.subTest(parameter=name):
                p = self.params[name]
                self.assertEqual((p["type"], p["multiSelect"]), (2, True), "multi-select dropdown")
                self.assertEqual(json.loads(p["jsonData"]), values)
                self.assertEqual(p["typeSettings"]["selectAllValue"], "*")
                self.assertEqual(p["value"], ["value::all"], "everything by default")
        for name in ("Reference", "TicketId"):
            with self.subTest(parameter=name):
                p = self.params[name]
                # A query waits for a parameter without a value, so "any" is '*', not empty.
                self.assertEqual((p["type"], p["value"]), (1, "*"), "text box, '*' = any")

    def test_every_query_reads_the_delivery_lines_with_parse_kv_and_only_known_fields(self) -> None:
        self.assertGreaterEqual(len(self.queries), 4)
        for item in self.queries:
            with self.subTest(item=item["name"]):
                content = item["content"]
                self.assertEqual((content["queryType"], content["resourceType"]), (0, "microsoft.insights/components"))
                self.assertEqual(kql_problems(content["query"]), [])

    def test_typed_filters_are_escaped_into_the_query(self) -> None:
        for item in self.queries:
            kql = item["content"]["query"]
            for name in ("Reference", "TicketId"):
                with self.subTest(item=item["name"], parameter=name):
                    # A " typed into the box must not end the KQL string: {X:escapejson} escapes it.
                    self.assertNotRegex(kql, rf"\{{{name}\}}|\{{{name}:(?!escapejson\}})")

    def test_time_range(self) -> None:
        for item in self.queries:
            content = item["content"]
            with self.subTest(item=item["name"]):
                if content.get("timeContextFromParameter") == "TimeRange":
                    self.assertIn("{TimeRange}", content["query"])
                else:
                    self.assertIn("durationMs", content["timeContext"], "a fixed window of its own")

    def query(self, name: str) -> dict[str, Any]:
        (item,) = [i for i in self.queries if i["name"] == name]
        return item["content"]

    def test_counts_per_outcome_over_time(self) -> None:
        content = self.query("outcomes-over-time")
        self.assertIn(content["visualization"], ("barchart", "timechart"))
        self.assertRegex(content["query"], r"summarize \w+ = count\(\) by bin\(timestamp, \{TimeRange:grain\}\), outcome")

    def test_deliveries_grid_with_the_four_filters(self) -> None:
        content = self.query("deliveries")
        self.assertEqual(content["visualization"], "table")
        kql = content["query"]
        for p in ("Route", "Outcome", "Reference", "TicketId"):
            self.assertIn("{" + p, kql)
        for column in ("route", "outcome", "reference", "ticket_id", "work_id", "detail", "correlation_id"):
            self.assertRegex(kql, rf"\| project [^|]*\b{column}\b")

    def test_what_is_stuck_now(self) -> None:
        content = self.query("stuck")
        kql = content["query"]
        self.assertEqual(content["visualization"], "table")
        self.assertNotIn("timeContextFromParameter", content, "stuck now, whatever the time range")
        # The last line of each work item: queued or retried with no later completed, or given up.
        self.assertRegex(kql, r"summarize arg_max\(timestamp, [^)]*\boutcome\b[^)]*\) by work_id")
        self.assertLessEqual({"queued", "retried", "dead-lettered"}, compared_values(kql, "outcome"))
        self.assertNotIn("completed", compared_values(kql, "outcome"))

    def test_dead_letters_with_their_reason(self) -> None:
        kql = self.query("dead-letters")["query"]
        self.assertEqual(compared_values(kql, "outcome"), {"dead-lettered"})
        self.assertRegex(kql, r"\| project [^|]*\bdetail\b")


class TestOperationsDoc(unittest.TestCase):
    SECTION = "## Run history, the status page and KQL"

    @classmethod
    def setUpClass(cls) -> None:
        text = OPERATIONS_MD.read_text()
        assert cls.SECTION in text, f"docs/operations.md has no section {cls.SECTION!r}"
        cls.section = text.split(cls.SECTION, 1)[1].split("\n## ", 1)[0]
        cls.blocks = re.findall(r"```kql\n(.*?)```", cls.section, re.S)

    def test_each_common_question_has_its_query(self) -> None:
        self.assertGreaterEqual(len(self.blocks), 5)
        for block in self.blocks:
            with self.subTest(query=block.splitlines()[0]):
                self.assertEqual(kql_problems(block), [])
        for question in (r"(?i)ticketed", r"(?i)comment", r"(?i)stuck", r"(?i)per outcome", r"(?i)dead letters"):
            self.assertRegex(self.section, question)

    def test_names_the_workbook_and_the_status_page(self) -> None:
        for s in ("Application Insights → Workbooks", "Bridge deliveries (<appName>)", "infra/workbook.json",
                  "GET /api/status", "STATUS_PAGE_KEY", "x-status-key", "Accept: application/json", "HttpOnly",
                  "SameSite=Strict", "401"):
            self.assertIn(s, self.section)


class TestHandlerLogsTheFields(unittest.TestCase):
    """The workbook and the docs read fields and outcomes that src/ writes (checked on the source text, like the
    alert lines in test_monitoring.py). A delivery line is a `tracing::<level>!(...)` that names the fields every
    delivery line has (route, outcome, duration_ms) and whose message is "request" or "invocation", written as that
    literal or as a `"{line}"` of a variable that src/ passes those literals in. An outcome is written when src/
    holds it as a string literal."""

    REQUIRED = ("route", "outcome", "duration_ms")

    @classmethod
    def setUpClass(cls) -> None:
        cls.logged: set[str] = set()
        cls.literals: set[str] = set()
        cls.messages: set[str] = set()
        delivery = {f'"{m}"' for m in LINE_MESSAGES}
        for path in SRC.rglob("*.rs"):
            text = path.read_text()
            cls.literals |= set(re.findall(r"\"([a-z-]+)\"", text))
            for args in macro_arguments(text):
                names = set()
                for arg in args[:-1]:
                    m = re.match(r"\s*[%?]?\s*([a-z_]+)\s*(?:=|$)", arg)
                    if m:
                        names.add(m.group(1))
                message = args[-1].strip() if args else ""
                # Other lines (the reconcile's, ...) may name the same fields: the workbook leaves them out too.
                if set(cls.REQUIRED) <= names and (message in delivery or re.fullmatch(r'"\{\w+\}"', message)):
                    cls.logged |= names
                    cls.messages.add(message)

    def test_the_delivery_lines_are_request_and_invocation(self) -> None:
        self.assertTrue(
            self.messages,
            f"no tracing line in src/ names {', '.join(self.REQUIRED)} with the message "
            f"{' or '.join(LINE_MESSAGES)} (as that literal, or as \"{{line}}\" of a variable)",
        )
        if any(m not in {f'"{n}"' for n in LINE_MESSAGES} for m in self.messages):
            # A line name from a variable: src/ must hold both names as literals.
            self.assertLessEqual(set(LINE_MESSAGES), self.literals)

    def test_every_field_is_in_a_delivery_line(self) -> None:
        missing = sorted(set(FIELDS) - self.logged)
        self.assertEqual(
            missing, [],
            f"fields the workbook parses that no delivery line in src/ names (as `<field> = ...` or `<field>,` in a "
            f"tracing macro that also names {', '.join(self.REQUIRED)}): {missing}",
        )

    def test_every_outcome_is_written_by_src(self) -> None:
        missing = sorted(set(OUTCOMES) - self.literals)
        self.assertEqual(missing, [], f"outcomes no string literal of src/ holds: {missing}")


def macro_arguments(text: str) -> list[list[str]]:
    """The top-level arguments of every `tracing::<level>!(...)` call (including `tracing::$level!(` in macro_rules)."""
    out = []
    for m in re.finditer(r"tracing::\$?\w+!\(", text):
        depth, start, args, i = 1, m.end(), [], m.end()
        in_string = False
        while i < len(text) and depth:
            ch = text[i]
            if in_string:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(text[start:i])
                start = i + 1
            i += 1
        last = text[start:i - 1]
        if last.strip():
            args.append(last)
        out.append(args)
    return out


class TestStatusPageSettings(unittest.TestCase):
    """STATUS_PAGE_KEY is wired like the other secrets (Key Vault reference plus its _NAME for direct reads, a vault
    secret created only when given), for every direction; HALO_WEB_URL and RUN_RETENTION_DAYS are plain settings."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = c.parse_bicep()
        cls.kv_name, _ = c.one_resource(cls.doc, "Microsoft.KeyVault/vaults")

    def test_key_is_a_key_vault_reference_in_every_direction(self) -> None:
        for direction in ("both", "cf-webhook", "halo-webhook"):
            with self.subTest(directions=direction):
                by_name = {i["name"]: i["value"] for i in c.app_settings(self.doc, directions=direction)}
                self.assertEqual(
                    by_name["STATUS_PAGE_KEY"],
                    f"@Microsoft.KeyVault(VaultName=${{{self.kv_name}.name}};SecretName=${{secretNames.statusPage}})",
                )
                self.assertEqual(c.Evaluator(self.doc, {})(by_name["STATUS_PAGE_KEY_NAME"]), "status-page-key")
                for name in ("HALO_WEB_URL", "RUN_RETENTION_DAYS"):
                    self.assertIn(name, by_name)

    def test_key_vault_secret_only_when_given(self) -> None:
        secrets = c.resources_of_type(self.doc, "Microsoft.KeyVault/vaults/secrets")
        (res,) = [r for r in secrets.values() if c.body(r)["properties"]["value"] == "statusPageKey"]
        self.assertEqual(c.Evaluator(self.doc, {})(c.body(res)["name"]), "status-page-key")
        self.assertIs(c.Evaluator(self.doc, {"statusPageKey": ""})(c.condition(res)), False)
        for direction in ("both", "cf-webhook", "halo-webhook"):
            self.assertIs(c.Evaluator(self.doc, {"statusPageKey": "x", "directions": direction})(c.condition(res)), True)
        p = self.doc["parameters"]["statusPageKey"]
        self.assertIn("secure", [d["type"] for d in p["decorators"]])
        self.assertEqual(p["default"], "")
        site = c.body(c.one_resource(self.doc, "Microsoft.Web/sites")[1])
        self.assertIn(next(n for n, r in secrets.items() if r is res), site["dependsOn"])

    def test_plain_settings_come_from_their_parameters(self) -> None:
        by_name = {i["name"]: i["value"] for i in c.all_app_setting_items(self.doc)}
        self.assertEqual(by_name["HALO_WEB_URL"], "haloWebUrl")
        self.assertEqual(self.doc["parameters"]["haloWebUrl"]["default"], "", "no links until it is set")
        self.assertEqual(c.function_call(by_name["RUN_RETENTION_DAYS"]), ("string", {"value_to_convert": "runRetentionDays"}))
        p = self.doc["parameters"]["runRetentionDays"]
        self.assertEqual(p["default"], 30)
        bounds = {d["type"]: d["argument"] for d in p["decorators"] if d["type"] in ("min_value", "max_value")}
        self.assertEqual(bounds, {"min_value": 1, "max_value": 365}, "the range the handler accepts")

    def test_local_settings_example_has_them(self) -> None:
        values = json.loads((c.ROOT / "local.settings.json.example").read_text())["Values"]
        self.assertEqual(values["STATUS_PAGE_KEY"], "")
        self.assertEqual(values["STATUS_PAGE_KEY_NAME"], "status-page-key")
        self.assertEqual(values["HALO_WEB_URL"], "")
        self.assertEqual(values["RUN_RETENTION_DAYS"], "30")


if __name__ == "__main__":
    unittest.main()
