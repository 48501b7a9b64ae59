"""The plugin author's example package, installed with real pip and listed by the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pluginsite import MDIVICOM, pip_install_target

EXAMPLE = Path(__file__).parents[1] / "examples" / "minimal-plugin"


def test_minimal_plugin_package_installs_and_lists(tmp_path):
    target = tmp_path / "target"
    pip_install_target(target, EXAMPLE)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "MDIVICOM_PLUGIN_PATH": ""}
    result = subprocess.run(
        [MDIVICOM, "plugins", "info", "hello", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(result.stdout)
    assert info["ref"] == "example/hello" and info["status"] == "ok"
    assert info["distribution"] == {"name": "mdivicom-hello", "version": "0.1.0"}
    assert info["entry"] == {"callable": "mdivicom_hello.run:run"}
    assert info["notes"] == []
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mdivicomtools.discovery import discover; discover();"
            "print('mdivicom_hello.run' in sys.modules)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"
