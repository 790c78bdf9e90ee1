"""The layering rule of docs/architecture.md, checked on src/: a module of the library uses only modules of a lower
layer (and its own submodules), so there is no import cycle and no module reaches up."""

from __future__ import annotations

import re
import unittest

from tests.infra import common as c

SRC = c.ROOT / "src"

# Lowest first. Keep in step with the table in docs/architecture.md.
LAYERS = [
    {"domain", "wire", "availability", "settings", "trace"},
    {"secrets"},
    {"config", "upstream"},
    {"identity", "telemetry"},
    {"cf", "halo", "store", "keyvault"},
    {"work"},
    {"directions"},
    {"app"},
    {"routes", "check", "import_links"},
    {"startup"},
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def top_module(path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def uses(text: str) -> set[str]:
    """The top-level crate modules a file names (`crate::x`, in `use` lines and paths alike)."""
    return set(re.findall(r"\bcrate::([a-z_]+)", text))


class TestLayers(unittest.TestCase):
    def test_every_module_has_a_layer(self) -> None:
        lib = (SRC / "lib.rs").read_text()
        declared = set(re.findall(r"^pub mod ([a-z_]+);", lib, re.M))
        self.assertEqual(declared, set(LAYER), "src/lib.rs and the layer table name the same modules")

    def test_no_module_uses_one_of_its_own_layer_or_above(self) -> None:
        problems = []
        for path in sorted(SRC.rglob("*.rs")):
            if path.name in ("lib.rs", "main.rs") and path.parent == SRC:
                continue
            module = top_module(path)
            for used in uses(path.read_text()):
                if used != module and LAYER[used] >= LAYER[module]:
                    problems.append(f"{path.relative_to(c.ROOT)}: {module} (layer {LAYER[module] + 1}) uses {used} (layer {LAYER[used] + 1})")
        self.assertEqual(problems, [])

    def test_main_is_thin(self) -> None:
        main = (SRC / "main.rs").read_text()
        self.assertEqual(uses(main) | set(re.findall(r"cf_halo_bridge::([a-z_]+)", main)), {"cli"})


if __name__ == "__main__":
    unittest.main()
