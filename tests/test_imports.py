"""The package's layers, read from the source: imports only go down.

    cli
    serving                       (the commands predict, export and serve)
    api                           (the Python API, ferkit.Analyzer, which predict and serve call)
    evaluation                    (`fer evaluate`; neither it nor api imports serving)
    inference    training         (pixels to probabilities; the training loop)
    data         models           (arrays and labels; networks and checkpoints)
    the top-level modules         (errors, choices, emotions, params, imaging, ...)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ferkit"

# What each subpackage may import from the others; top-level modules are below all of them.
ALLOWED: dict[str, set[str]] = {
    "data": set(),
    "models": set(),
    "pretrained": set(),
    "training": {"data", "models", "pretrained"},  # pretrained: a shipped model to fine-tune (train.init)
    "inference": {"models", "pretrained"},
    "evaluation": {"data", "models", "inference"},
    # The public API and the photo and video analysis it runs; below serving so that `fer predict` and
    # `fer serve` call it (one code path), above evaluation so that Analyzer.evaluate gives `fer evaluate
    # --data`'s numbers by calling it (lazily: only evaluate() imports it).
    "api": {"inference", "evaluation"},
    "serving": {"models", "inference", "pretrained", "api"},
}
# Modules of serving/ that are commands (`fer predict`, `fer export`, `fer serve`): none imports another.
SERVING_COMMANDS = {"predict", "export", "server"}


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """The `fer.` modules a source file imports, as dotted names without the leading `fer.`;
    relative imports (`from ..evaluation import x`) are resolved against the file's package."""
    package = list(path.relative_to(root).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("ferkit."):
                module = node.module.removeprefix("ferkit.")
            else:
                continue
            found.add(module)
            found.update(f"{module}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("ferkit.") for alias in node.names if alias.name.startswith("ferkit."))
    return found


def import_map() -> dict[str, set[str]]:
    """module (e.g. 'serving.predict') -> the fer modules it imports."""
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): imports_of(path)
            for path in sorted(PACKAGE.rglob("*.py"))}


SUBPACKAGES = sorted(ALLOWED)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_a_subpackage_imports_only_the_layers_below_it(subpackage: str) -> None:
    climbing = {}
    for module, imported in import_map().items():
        if module.split(".")[0] != subpackage or "." not in module:
            continue
        wrong = {name.split(".")[0] for name in imported} & set(SUBPACKAGES) - ALLOWED[subpackage] - {subpackage}
        if wrong:
            climbing[module] = sorted(wrong)
    assert climbing == {}


def test_evaluation_and_serving_do_not_import_each_other_and_inference_neither() -> None:
    modules = import_map()
    for module, imported in modules.items():
        top = {name.split(".")[0] for name in imported}
        if module.startswith("evaluation."):
            assert not top & {"serving", "api"}, module
        if module.startswith("serving."):  # evaluate() of the API is where the commands reach it
            assert "evaluation" not in top, module
        if module.startswith("inference."):
            assert not top & {"serving", "evaluation", "training"}, module


def test_no_serving_command_imports_another() -> None:
    for command in SERVING_COMMANDS:
        imported = {name.split(".")[1] for name in import_map()[f"serving.{command}"] if name.startswith("serving.")}
        assert not imported & (SERVING_COMMANDS - {command}), command


def test_top_level_modules_import_no_subpackage() -> None:
    """errors, choices, params, imaging, ... sit below every subpackage (cli imports its commands by name;
    the package's __init__ hands out the API's names, importing ferkit.api on first use)."""
    for module, imported in import_map().items():
        if "." not in module and module not in {"cli", "__main__", "__init__"}:
            assert not {name.split(".")[0] for name in imported} & set(SUBPACKAGES), module


def test_relative_imports_are_resolved(tmp_path) -> None:
    assert imports_of(PACKAGE / "serving" / "predict.py") >= {"api.analyzer"}
    probe = tmp_path / "serving" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from ..evaluation import evaluate\nfrom .results import csv_rows\n")
    assert {"evaluation", "evaluation.evaluate", "serving.results"} <= imports_of(probe, root=tmp_path)


def test_the_map_sees_real_imports() -> None:
    """Guards the checks above against a parser that finds nothing."""
    modules = import_map()
    assert "api.analyzer" in modules["serving.predict"]
    assert "inference.models" in modules["api.analyzer"]
    assert "inference.proba" in modules["evaluation.evaluate"]
