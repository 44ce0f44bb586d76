"""The core's layering: Dagster-free, and matplotlib only in the report modules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import imgcls_pipeline.core

CORE = Path(imgcls_pipeline.core.__file__).parent
REPORT = "imgcls_pipeline.core.search.report"
# Modules that draw (import REPORT, hence matplotlib); nothing else in the core may load it.
DRAWING = {REPORT, "imgcls_pipeline.core.search.report_files"}


def core_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imported_roots(path: Path) -> set[str]:
    """Top-level package of every import statement in the file, at any depth (lazy ones too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_finds_the_core_modules():
    names = core_modules()
    assert {"imgcls_pipeline.core.errors", "imgcls_pipeline.core.search.index", REPORT} <= set(
        names
    )
    assert "matplotlib" in imported_roots(names[REPORT])  # the check below can see an import


def test_no_core_module_imports_dagster():
    offenders = [name for name, path in core_modules().items() if "dagster" in imported_roots(path)]
    assert offenders == []


def test_only_the_report_module_names_matplotlib():
    offenders = [
        name
        for name, path in core_modules().items()
        if name != REPORT and "matplotlib" in imported_roots(path)
    ]
    assert offenders == []


def test_importing_every_core_module_but_the_report_loads_no_matplotlib():
    # A fresh interpreter, so that what this test process imported elsewhere does not count, and
    # transitive imports (a core module importing report) are caught too.
    names = [name for name in core_modules() if name not in DRAWING]
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_help_and_a_mistyped_flag_load_no_pandas_torch_or_dagster():
    # The fast path of `imgcls`: help and flag errors answer before the heavy libraries load.
    script = (
        "import contextlib, io, json, sys\n"
        "from imgcls_pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = [main(['train', '-h']), main(['train', '--bogus=1'])]\n"
        "heavy = {'pandas', 'torch', 'dagster', 'faiss'}\n"
        "print(json.dumps([codes, sorted(heavy & {m.split('.')[0] for m in sys.modules})]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[0, 2], []]
