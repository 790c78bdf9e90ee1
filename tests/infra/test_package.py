"""The deployable package: runs scripts/package (an incremental release build) and checks dist/app.zip.

dist/app.zip is left in place: the Rust test that starts the packaged handler under the stand-in host uses it."""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import tempfile
import unittest
import zipfile
from pathlib import Path

from . import common as c

ZIP = c.ROOT / "dist" / "app.zip"
FUNCTIONS = ["cf-webhook", "halo-webhook", "work-items", "dead-letters", "reconcile", "status", "housekeeping"]
ENTRIES = ["host.json", *(f"{f}/function.json" for f in FUNCTIONS), "handler"]
SCHEMAS = c.ROOT / "tests" / "schemas"
MAX_GLIBC = (2, 28)

PT_INTERP = 3


def elf_facts(data: bytes) -> dict:
    """Class, machine and whether the ELF asks for a program interpreter (a dynamic loader)."""
    if data[:4] != b"\x7fELF":
        raise AssertionError("handler is not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise AssertionError("handler is not a 64-bit little-endian ELF")
    (e_type, e_machine) = struct.unpack_from("<HH", data, 16)
    (e_phoff,) = struct.unpack_from("<Q", data, 32)
    (e_phentsize, e_phnum) = struct.unpack_from("<HH", data, 54)
    interp = None
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        (p_type,) = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            (p_offset,) = struct.unpack_from("<Q", data, off + 8)
            (p_filesz,) = struct.unpack_from("<Q", data, off + 32)
            interp = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    glibc = sorted({tuple(int(x) for x in m.split(b".")) for m in re.findall(rb"GLIBC_(\d+\.\d+(?:\.\d+)?)", data)})
    return {"type": e_type, "machine": e_machine, "interp": interp, "glibc": glibc}


class TestPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        # Always build: cargo is incremental, so an unchanged tree costs about a second.
        run = subprocess.run(
            [str(c.ROOT / "scripts" / "package")], cwd=c.ROOT, capture_output=True, text=True, timeout=3600
        )
        cls.output = run.stdout + run.stderr
        if run.returncode != 0:
            raise AssertionError(f"scripts/package failed ({run.returncode}):\n{cls.output[-4000:]}")
        with zipfile.ZipFile(ZIP) as z:
            cls.infos = {i.filename: i for i in z.infolist()}
            cls.data = {name: z.read(name) for name in cls.infos}

    def test_prints_sizes(self) -> None:
        self.assertRegex(self.output, r"dist/app\.zip \d+ bytes")
        self.assertRegex(self.output, r"handler \d+ bytes")

    def test_exactly_the_four_entries(self) -> None:
        self.assertEqual(sorted(self.infos), sorted(ENTRIES))
        with zipfile.ZipFile(ZIP) as z:
            self.assertIsNone(z.testzip())

    def test_handler_is_executable_and_the_rest_is_not(self) -> None:
        for name, info in self.infos.items():
            with self.subTest(entry=name):
                self.assertEqual(info.create_system, 3, "Unix attributes, so the mode bits are honoured")
                mode = info.external_attr >> 16
                self.assertTrue(stat.S_ISREG(mode), oct(mode))
                if name == "handler":
                    self.assertEqual(mode & 0o111, 0o111, f"handler mode {oct(mode)}")
                else:
                    self.assertEqual(mode & 0o111, 0, f"{name} mode {oct(mode)}")

    def test_host_files_are_the_repository_copies(self) -> None:
        for name in ENTRIES[:3]:
            with self.subTest(entry=name):
                self.assertEqual(self.data[name], (c.ROOT / name).read_bytes())

    def test_host_files_match_their_schemas(self) -> None:
        import jsonschema

        host_schema = json.loads((SCHEMAS / "host.schema.json").read_text())
        function_schema = json.loads((SCHEMAS / "function.schema.json").read_text())
        host_validator = jsonschema.validators.validator_for(host_schema)(host_schema)
        # function.schema.json declares draft-04 but uses `const`: validate it as draft-07 (tests/schemas/README.md).
        function_validator = jsonschema.Draft7Validator(function_schema)
        for name, validator in (
            ("host.json", host_validator),
            *((f"{f}/function.json", function_validator) for f in FUNCTIONS),
        ):
            with self.subTest(entry=name):
                errors = [e.message for e in validator.iter_errors(json.loads(self.data[name]))]
                self.assertEqual(errors, [])
        # The validators are not vacuous.
        self.assertFalse(host_validator.is_valid({"version": "2.0", "customHandler": {"enableForwardingHttpRequests": True}}))
        bad = json.loads(self.data["cf-webhook/function.json"])
        bad["bindings"][0]["authLevel"] = "Function"
        self.assertFalse(function_validator.is_valid(bad))

    def test_queue_triggers_read_the_work_queue_and_its_poison_queue_with_the_bundle(self) -> None:
        host = json.loads(self.data["host.json"])
        self.assertEqual(host["extensionBundle"]["id"], "Microsoft.Azure.Functions.ExtensionBundle")
        self.assertEqual(host["extensionBundle"]["version"], "[4.*, 5.0.0)", "Flex Consumption needs bundle 4")
        queues = host["extensions"]["queues"]
        self.assertEqual(queues["messageEncoding"], "base64", "the handler enqueues base64 text")
        self.assertGreaterEqual(queues["maxDequeueCount"], 10, "retries outlast an outage of several minutes")
        for function, queue in (("work-items", "work-items"), ("dead-letters", "work-items-poison")):
            with self.subTest(function=function):
                (binding,) = json.loads(self.data[f"{function}/function.json"])["bindings"]
                self.assertEqual(
                    (binding["type"], binding["name"], binding["queueName"], binding["connection"]),
                    ("queueTrigger", "item", queue, "AzureWebJobsStorage"),
                )

    def test_the_reconcile_timer_takes_its_schedule_from_an_app_setting(self) -> None:
        (binding,) = json.loads(self.data["reconcile/function.json"])["bindings"]
        self.assertEqual(
            (binding["type"], binding["direction"], binding["name"], binding["schedule"]),
            ("timerTrigger", "in", "timer", "%RECONCILE_SCHEDULE%"),
        )
        self.assertNotIn("runOnStartup", binding, "Microsoft: should rarely if ever be true in production")

    def test_host_json_runs_the_packaged_handler(self) -> None:
        host = json.loads(self.data["host.json"])
        self.assertEqual(host["customHandler"]["description"]["defaultExecutablePath"], "handler")

    def test_handler_is_static_or_needs_glibc_2_28_at_most(self) -> None:
        facts = elf_facts(self.data["handler"])
        self.assertEqual(facts["machine"], 62, "x86-64")
        if facts["interp"] is None:
            self.assertEqual(facts["glibc"], [], "a static binary references no glibc symbol versions")
        else:
            newest = max(facts["glibc"], default=(0, 0))
            self.assertLessEqual(newest[:2], MAX_GLIBC, f"needs GLIBC_{'.'.join(map(str, newest))} ({facts['interp']})")

    def test_file_and_ldd_agree(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            exe = Path(tmp) / "handler"
            exe.write_bytes(self.data["handler"])
            exe.chmod(0o755)
            if elf_facts(self.data["handler"])["interp"] is not None:
                self.skipTest("dynamic handler: its glibc needs are checked from the ELF instead")
            desc = _run(["file", "-b", str(exe)])
            if desc is not None:
                self.assertRegex(desc, r"statically linked|static-pie linked")
            ldd = _run(["ldd", str(exe)], ok_codes=(0, 1))
            if ldd is not None:
                self.assertRegex(ldd, r"not a dynamic executable|statically linked")

    def test_packaged_handler_runs_and_reads_the_same_settings(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(ZIP) as z:
                z.extractall(tmp)
            exe = Path(tmp) / "handler"
            # zipfile does not restore modes; the Functions host on Flex sets the user execute bit the same way.
            exe.chmod(self.infos["handler"].external_attr >> 16 & 0o777)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNCTIONS_", "HALO_", "CF_"))}
            version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(version.returncode, 0, version.stderr)
            self.assertTrue(version.stdout.strip(), "prints its version")
            listed = subprocess.run([str(exe), "--list-settings"], capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(listed.returncode, 0, listed.stderr)
            self.assertEqual(
                [s["name"] for s in json.loads(listed.stdout)],
                [s["name"] for s in c.handler_settings()],
                "the packaged release build and the debug build read the same settings",
            )


def _run(cmd: list[str], ok_codes: tuple[int, ...] = (0,)) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return None
    if r.returncode not in ok_codes:
        return None
    return r.stdout + r.stderr


if __name__ == "__main__":
    unittest.main()


class TestReleaseProfile(unittest.TestCase):
    def test_a_panic_unwinds_so_it_fails_one_request_not_the_process(self) -> None:
        import tomllib

        profile = tomllib.loads((c.ROOT / "Cargo.toml").read_text())["profile"]["release"]
        self.assertNotEqual(profile.get("panic", "unwind"), "abort", "routes::guarded needs panics to unwind")
