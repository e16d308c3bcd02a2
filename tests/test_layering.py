"""The layering contract (pyproject ``[tool.importlinter]``) holds on the tree, and the check
really fails when the domain imports the runtime: a check that cannot fail proves nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "devices", "alerts", "simulators", "bench")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(to: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def test_tree_keeps_the_layering() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_upward_import_from_the_domain_breaks_the_check(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "alerts" / "upward.py").write_text("from gateway.config import Settings\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "alerts.upward -> gateway.config" in result.stdout


def test_devices_importing_alerts_breaks_the_check(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "devices" / "upward.py").write_text("import alerts.models\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "devices.upward -> alerts.models" in result.stdout
