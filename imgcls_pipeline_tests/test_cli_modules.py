"""The ``imgcls`` package: no import cycle, and evaluate/predict never load Dagster."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import imgcls_pipeline.cli
from imgcls_pipeline.cli import main
from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.core.errors import UserError

CLI_DIR = Path(imgcls_pipeline.cli.__file__).parent


def _imports(path: Path) -> set[str]:
    """The modules a file imports, at any depth (a lazy import inside a function counts)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_cli_module_imports_one_that_imports_it_back() -> None:
    modules = {
        f"imgcls_pipeline.cli.{p.stem}" if p.stem != "__init__" else "imgcls_pipeline.cli": p
        for p in CLI_DIR.glob("*.py")
    }
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}
    # The package itself dispatches to the command modules by name (importlib), never the reverse.
    assert all("imgcls_pipeline.cli" not in imported for imported in graph.values())

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [name for name in graph if name in reachable(name)] == []


def test_no_cli_module_uses_another_modules_private_names() -> None:
    for path in CLI_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_run_without_dagster(command: str) -> None:
    code = (
        "import sys\n"
        f"import imgcls_pipeline.cli.{command}\n"
        "from imgcls_pipeline.cli import main\n"
        f"code = main(['{command}', '--checkpoint', 'missing.pt', '--index_dir', '.', 'x.jpg']"
        f" if '{command}' == 'predict' else ['{command}', '--checkpoint', 'missing.pt'])\n"
        "assert code == 2, code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_pipes'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_evaluate_command_loads_no_matplotlib() -> None:
    # A fresh interpreter: what this test process imported elsewhere must not count.
    code = (
        "import sys, imgcls_pipeline.cli.evaluate\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_settings_file_is_read_by_every_command_and_flags_win(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("seed: 3\ntotal_epochs: 4\n")
    line = read_command_line(["--data_dir", "d", "--settings", str(settings), "--seed=9"], "train")
    assert line.options == {"data_dir": "d"}
    assert (line.config.seed, line.config.training.total_epochs) == (9, 4)


def test_an_unknown_flag_is_one_error_line(capsys) -> None:
    assert main(["train", "--totl_epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown flag --totl_epochs for `imgcls train`. Did you mean")
    assert len(err.splitlines()) == 1
    with pytest.raises(UserError, match="flags look like --name=value"):
        refuse_arguments(read_command_line(["stray"], "index"))
