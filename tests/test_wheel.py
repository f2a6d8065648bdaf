"""The package installs anywhere: a wheel built from this checkout, installed into a fresh virtual
environment and run from another folder, has its sample, its CLI and its deployable flow.

The new environment gets the wheel itself (``--no-deps``); its dependencies come from the suite's
environment through a ``.pth`` path, which adds the folder but not that environment's editable
install of this project: every ``recsys`` module the commands import comes from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

SMALL = ["--set", "walks.walks_per_node=2", "--set", "walks.walk_length=10", "--set", "train.models=[word2vec,popular]",
         "--set", "train.word2vec.epochs=2"]


def _run(command: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building writes build/ and *.egg-info/ beside the sources
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"), str(source)],
         root, dict(os.environ))
    (wheel,) = (root / "dist").glob("recsys_nightly-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], root, dict(os.environ))
    venv_python = root / "venv" / "bin" / "python"
    purelib = Path(_run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        root, dict(os.environ)).stdout.strip())
    (purelib / "suite_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv_python), "install", "--no-deps", "--quiet", str(wheel)],
         root, dict(os.environ))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PREFECT_HOME=str(root / "prefect-home"), COLUMNS="200", PATH=f"{root / 'venv' / 'bin'}:{env['PATH']}")
    return {"wheel": wheel, "venv": root / "venv", "cwd": elsewhere, "env": env, "purelib": purelib}


def test_the_wheel_ships_the_sample_and_no_tests(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {"recsys/sample_data/events.csv.gz", "recsys/sample_data/items.csv.gz", "flows/nightly.py",
            "tasks/stages.py"} <= set(names)
    assert not any(name.startswith("tests/") for name in names)


def test_installed_commands_run_from_another_folder(installed):
    recsys = str(installed["venv"] / "bin" / "recsys")
    cwd, env = installed["cwd"], installed["env"]
    where = _run([str(installed["venv"] / "bin" / "python"), "-c", "import recsys, flows; print(recsys.__file__, flows.__file__)"], cwd, env)
    assert all(path.startswith(str(installed["purelib"])) for path in where.stdout.split()), where.stdout

    config = _run([recsys, "config"], cwd, env)
    assert "walk_length: 20" in config.stdout and "input: null" in config.stdout

    lake = cwd / "lake"
    run = _run([recsys, "run", "--lake", str(lake), *SMALL], cwd, env)
    assert "published item_to_item:" in run.stdout and "run_date 2024-03-14" in run.stdout

    latest = _run([recsys, "latest", "--lake", str(lake)], cwd, env)
    assert json.loads(latest.stdout)["run_date"] == "2024-03-14"
