"""The project's shape: each DVC stage depends on exactly the code it runs, output paths agree
between dvc.yaml and ferkit.layout, and the CLI starts without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ferkit import layout
from ferkit.choices import MODEL_NAMES
from ferkit.cli import COMMAND_MODULES
from ferkit.sources import PACKAGE_DIR, code_files

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> set[Path]:
    """The stage's dependencies under src/, folders expanded to their modules."""
    files: set[Path] = set()
    for dep in stage["deps"]:
        path = REPO / dep
        if not dep.startswith("src/"):
            continue
        found = path.rglob("*.py") if path.is_dir() else [path]
        files.update(file.resolve() for file in found if file.name != "__init__.py")
    return files


@pytest.mark.parametrize("name", sorted(PIPELINE))
def test_stage_code_deps_are_exactly_its_imports(name: str) -> None:
    stage = PIPELINE[name]
    command = stage["cmd"].split()[1]  # "fer train basic" -> "train"
    imported = {path.resolve() for path in code_files(COMMAND_MODULES[command])}
    listed = code_deps(stage)
    relative = lambda paths: sorted(str(path.relative_to(PACKAGE_DIR)) for path in paths)  # noqa: E731
    assert relative(listed - imported) == [], "dvc.yaml lists code the stage does not import"
    assert relative(imported - listed) == [], "the stage imports code that dvc.yaml does not list"


def test_preprocess_does_not_depend_on_face_detection_and_evaluate_not_on_training() -> None:
    assert not any("serving" in path.parts for path in code_deps(PIPELINE["preprocess"]))
    assert not any("training" in path.parts for path in code_deps(PIPELINE["evaluate"]))


def declared_outputs() -> set[str]:
    outputs = set()
    for stage in PIPELINE.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outputs


def test_output_paths_agree_with_the_layout_module() -> None:
    expected = {str(layout.SYNTHETIC_CSV), str(layout.SYNTHETIC_VOTES), str(layout.DATA_DIR), str(layout.DATA_METRICS),
                str(layout.FIGURES_DIR)}
    for model in MODEL_NAMES:
        paths = layout.RunPaths.for_model(model)
        expected |= {str(paths.last.parent), str(paths.curves), str(paths.train_metrics), str(paths.metrics),
                     str(paths.report), str(paths.confusion), str(paths.f1)}
        assert paths.best.parent == paths.last.parent == paths.train_summary.parent  # inside models/<name>
    assert declared_outputs() == expected


def test_every_cli_command_module_exists() -> None:
    for command, module in COMMAND_MODULES.items():
        assert code_files(module), f"{command}: {module} not found"


def test_cli_and_parameter_checks_do_not_import_torch() -> None:
    code = ("import sys; import ferkit.cli, ferkit.params, ferkit.choices; ferkit.cli.build_parser(); "
            "print('torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"
