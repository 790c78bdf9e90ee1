"""checkov (https://www.checkov.io, PyPI `checkov`, pinned in scripts/requirements-checkov.txt) over infra/, offline.

Two scans, because checkov 3.3.30 reads no property of a conditional (`= if (...)`) Bicep resource:
- `as-written`: infra/ itself;
- `all-resources`: a copy of infra/main.bicep in which every conditional resource is unconditional, so the private-mode
  resources and the secrets are scanned with their properties.

Every finding must be listed in infra/checkov-skips.txt with its reason, and every entry there must still find
something (a skip that no longer applies is removed, not kept "just in case"). checkov runs with no network: inside a
network namespace of its own when `unshare -n` works (as root here and in CI), and always with its downloads and its
update check turned off (`--skip-download`, BC_SKIP_MAPPING, CKV_SKIP_PACKAGE_UPDATE_CHECK).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from . import common as c

SKIPS_FILE = c.INFRA / "checkov-skips.txt"
CHECKOV = Path(os.environ.get("CHECKOV") or c.ROOT / ".local" / "checkov-venv" / "bin" / "checkov")
SCANS = ("as-written", "all-resources")
SKIP_LINE = re.compile(r"^(CKV2?_[A-Z0-9_]+)(?:@(as-written|all-resources))?: (\S.*)$")
CONDITIONAL_RESOURCE = re.compile(r"= if \((?:[^()]|\([^()]*\))*\) \{")


def read_skips() -> dict[str, dict[str, str]]:
    """scan -> {check id -> reason}."""
    out: dict[str, dict[str, str]] = {scan: {} for scan in SCANS}
    for n, line in enumerate(SKIPS_FILE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = SKIP_LINE.match(line)
        if not m:
            raise AssertionError(f"{SKIPS_FILE.name}:{n}: not 'CHECK_ID[@scan]: reason': {line!r}")
        check, scan, reason = m.groups()
        for s in [scan] if scan else SCANS:
            if check in out[s]:
                raise AssertionError(f"{SKIPS_FILE.name}:{n}: {check} listed twice")
            out[s][check] = reason
    return out


def all_resources_copy(dest: Path) -> int:
    text = c.MAIN_BICEP.read_text()
    rewritten, count = CONDITIONAL_RESOURCE.subn("= {", text)
    (dest / "main.bicep").write_text(rewritten)
    return count


@functools.lru_cache(maxsize=None)
def unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def run_checkov(directory: Path) -> tuple[dict, str]:
    """checkov's JSON report for the Bicep files of `directory` (no check skipped) and its stderr."""
    cmd = [str(CHECKOV), "-d", str(directory), "--framework", "bicep", "-o", "json", "--skip-download"]
    if unshare_works():
        cmd = ["unshare", "-n", *cmd]
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        "CHECKOV_CREATE_MARKDOWN_HYPERLINKS": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("BC_API_KEY", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=c.ROOT)
    # Exit code 1 means "failed checks"; anything else is checkov itself failing.
    if proc.returncode not in (0, 1):
        raise AssertionError(f"checkov exited {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "bicep")
    return report, proc.stderr


class TestCheckov(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not CHECKOV.exists():
            raise AssertionError(f"{CHECKOV} is missing: run scripts/install-dev-deps")
        cls.skips = read_skips()
        cls.reports: dict[str, dict] = {}
        cls.stderr: dict[str, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            cls.conditional_resources = all_resources_copy(Path(tmp))
            for scan, directory in (("as-written", c.INFRA), ("all-resources", Path(tmp))):
                cls.reports[scan], cls.stderr[scan] = run_checkov(directory)

    def findings(self, scan: str) -> dict[str, set[str]]:
        """check id -> resources it failed on, plus the checks that crashed (they did not pass)."""
        out: dict[str, set[str]] = {}
        for f in self.reports[scan]["results"]["failed_checks"]:
            out.setdefault(f["check_id"], set()).add(f["resource"])
        for check in re.findall(r"Failed to run check (CKV2?_[A-Z0-9_]+) on (\S+)", self.stderr[scan]):
            out.setdefault(check[0], set()).add(f"(crashed) {check[1]}")
        return out

    def test_the_rewrite_made_every_conditional_resource_unconditional(self) -> None:
        conditional = [n for n, r in c.parse_bicep()["resources"].items() if c.condition(r) is not None]
        self.assertEqual(self.conditional_resources, len(conditional))
        self.assertGreater(self.conditional_resources, 0)

    def test_scans_really_ran(self) -> None:
        for scan in SCANS:
            with self.subTest(scan=scan):
                summary = self.reports[scan]["summary"]
                self.assertEqual(summary["parsing_errors"], 0, "checkov could not parse a Bicep file")
                self.assertGreaterEqual(summary["passed"], 20, "too few checks ran: was main.bicep scanned?")
                scanned = {r["file_path"] for r in self.reports[scan]["results"]["passed_checks"]}
                self.assertEqual(scanned, {"/main.bicep"})
        # The second scan sees the properties of the conditional resources: more checks pass there.
        self.assertGreater(self.reports["all-resources"]["summary"]["passed"], self.reports["as-written"]["summary"]["passed"])

    def test_every_finding_is_in_the_skip_file(self) -> None:
        for scan in SCANS:
            with self.subTest(scan=scan):
                unlisted = {k: sorted(v) for k, v in self.findings(scan).items() if k not in self.skips[scan]}
                self.assertEqual(unlisted, {}, f"new checkov findings ({scan}); fix them or list them in {SKIPS_FILE.name} with the reason")

    def test_every_skip_still_finds_something(self) -> None:
        for scan in SCANS:
            with self.subTest(scan=scan):
                stale = sorted(set(self.skips[scan]) - set(self.findings(scan)))
                self.assertEqual(stale, [], f"{SKIPS_FILE.name} skips checks that now pass in the {scan} scan")

    def test_each_skip_has_a_reason(self) -> None:
        for scan in SCANS:
            for check, reason in self.skips[scan].items():
                with self.subTest(check=check):
                    self.assertGreaterEqual(len(reason.split()), 8, "say why, in a sentence")

    def test_offline(self) -> None:
        # Recorded so a machine without `unshare` notices it is trusting the flags alone.
        if not unshare_works():
            self.skipTest("unshare -n is not available: checkov ran with its network flags only")
        for scan in SCANS:
            self.assertNotRegex(self.stderr[scan], r"(?i)max retries exceeded|connection (refused|error)|name resolution")


if __name__ == "__main__":
    unittest.main()
