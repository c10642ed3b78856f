"""``make test`` on a fresh machine: the system packages CI installs are installed, or named in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path, lines: str) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "requirements").mkdir()
    shutil.copy(REPO / "scripts" / "system-packages.sh", tmp_path / "scripts")
    (tmp_path / "requirements" / "system.txt").write_text(lines)
    return tmp_path / "scripts" / "system-packages.sh"


def _not_root(tmp_path: Path) -> dict[str, str]:
    """PATH with an ``id`` that answers 1000: the script runs as an ordinary user would."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "id").write_text("#!/bin/sh\necho 1000\n")
    (shims / "id").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return {**env, "PATH": f"{shims}:{env['PATH']}"}


def test_missing_packages_are_named_in_one_line_with_the_fix(tmp_path):
    script = _tree(tmp_path, "# comment\nvestis-no-such-package  # the imaginary tests (tests/x.py)\n")
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=_not_root(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("make test: SKIPPING the imaginary tests (tests/x.py)")
    assert line.endswith("sudo apt-get install -y vestis-no-such-package")


def test_ci_fails_when_a_package_cannot_be_had(tmp_path):
    script = _tree(tmp_path, "vestis-no-such-package  # the imaginary tests\n")
    env = {**_not_root(tmp_path), "CI": "1"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "CI needs them" in proc.stderr


def test_installed_packages_say_nothing_and_make_test_runs_the_script_first(tmp_path):
    script = _tree(tmp_path, "bash  # always there\n")
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=_not_root(tmp_path), timeout=60)
    assert proc.returncode == 0 and proc.stdout == ""
    # run as its own make, not as a sub-make of the `make test` this suite may be running under
    # (a sub-make prints "make[1]: Entering directory ..." first)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "test"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, env=env)  # fmt: skip
    assert dry.stdout.splitlines()[0] == "bash scripts/system-packages.sh"
    assert "make test" in (REPO / ".ci" / "run").read_text()
    listed = (REPO / "requirements" / "system.txt").read_text()
    assert "chromium" in listed and "dataset-fashion-mnist" in listed
