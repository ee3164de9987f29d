"""`pip install .` works: a built wheel installs into a fresh venv and Airflow lists the provider there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_installs_into_a_fresh_venv_and_airflow_lists_the_provider(tmp_path: Path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(dist), str(REPO_ROOT)])
    wheel = next(dist.glob("airflow_provider_refdata-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_refdata:get_provider_info" in entry_points
    assert "Classifier: Framework :: Apache Airflow :: Provider" in metadata
    assert not any(n.startswith(("tests/", "devtools/", "benchmarks/")) for n in names)
    # The "Reference data" page's files (the UI plugin serves them from the installed package).
    static = "airflow_provider_refdata/plugins/static/"
    for name in ("index.html", "app.js", "style.css", "icon.svg", "vendor/chart.umd.min.js", "vendor/README.md"):
        assert static + name in names, name
    assert static + "vendor/chart.js-LICENSE.md" in names  # Chart.js's MIT licence ships with it

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", python,
          "-r", str(REPO_ROOT / "requirements" / "lock.txt"), str(wheel)])  # fmt: skip
    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    listed = _run([str(venv / "bin" / "airflow"), "providers", "list", "--output", "json"], env=env, cwd=tmp_path)
    providers = {p["package_name"]: p["version"] for p in json.loads(listed.stdout)}
    assert providers.get("airflow-provider-refdata") == "0.1.0"
    # Airflow loads the plugin with its defaults (the airflow.plugins entry point) and with eager provider
    # discovery (get_provider_info()["plugins"] too, registered once).
    for lazy in ("True", "False"):
        env["AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS"] = lazy
        listed = _run([str(venv / "bin" / "airflow"), "plugins", "--output", "json"], env=env, cwd=tmp_path)
        plugins = [p for p in json.loads(listed.stdout) if p["name"] == "refdata"]
        assert len(plugins) == 1, (lazy, plugins)
        assert plugins[0]["fastapi_apps"][0]["url_prefix"] == "/refdata"
        assert plugins[0]["external_views"][0]["name"] == "Reference data"
