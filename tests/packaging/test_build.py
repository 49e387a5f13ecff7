"""The build under test is the one intended: scripts/test.sh runs the suite twice, on the editable
pure-Python install and on the production wheel whose hot path is compiled with mypyc (setup.py)."""

from __future__ import annotations

import ast
import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import cds

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    """setup.py's COMPILED list, as module names (read, not imported: importing setup.py would build)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in targets):
                paths: list[str] = ast.literal_eval(node.value)  # type: ignore[arg-type]
                return [p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def is_extension(module: str) -> bool:
    return str(importlib.import_module(module).__file__).endswith(tuple(EXTENSION_SUFFIXES))


def expected_build() -> str:
    expected = os.environ.get("TRIAL_CDS_EXPECT_BUILD")
    if not expected:
        pytest.skip("TRIAL_CDS_EXPECT_BUILD is not set (scripts/test.sh sets it for each run)")
    return expected


def test_the_build_running_the_tests_is_the_one_intended() -> None:
    assert cds.build() == expected_build()


def test_every_module_setup_py_lists_is_compiled_in_the_compiled_build_and_none_otherwise() -> None:
    compiled = expected_build() == "compiled"
    modules = compiled_modules()
    assert "cds.engine" in modules and "cds.record.reading" in modules
    assert {m: is_extension(m) for m in modules} == {m: compiled for m in modules}


def test_setup_py_lists_only_modules_that_exist() -> None:
    for module in compiled_modules():
        path = ROOT / (module.replace(".", "/") + ".py")
        package = ROOT / module.replace(".", "/") / "__init__.py"
        assert path.is_file() or package.is_file(), module
