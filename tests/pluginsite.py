"""Build real, installed-looking plugin distributions in a temporary folder.

Each distribution is a `<name>-<version>.dist-info` folder with METADATA and
entry_points.txt next to its modules, which is exactly what pip leaves in
site-packages. Putting the folder on sys.path (or PYTHONPATH for a subprocess)
makes importlib.metadata see real entry points; nothing is monkeypatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

#: the `mdivicom` under test: this interpreter's, or MDIVICOM_TEST_COMMAND (another
#: version's, to show that a fault test fails there: see tests/faults/faultkit.py)
MDIVICOM = os.environ.get("MDIVICOM_TEST_COMMAND") or str(
    Path(sys.executable).with_name("mdivicom")
)


def plugin_dict(
    plugin_id: str,
    *,
    publisher: str | None = "lab",
    kind: str = "python",
    run_module: str = "pkg_run",
    **meta: object,
) -> dict:
    base: dict = {
        "api_version": "mdivicomtools.plugin.v0.1",
        "id": plugin_id,
        "kind": kind,
        "version": "1.0.0",
        "description": f"The {plugin_id} plugin.",
    }
    if publisher is not None:
        base["publisher"] = publisher
    base.update(meta)
    if kind == "python":
        return {"meta": base, "entry": {"callable": f"{run_module}:run"}}
    return {
        "meta": base,
        "container": {"image": "localhost/mdivicom-test:1", "command": ["sh", "-c", "true"]},
    }


class PluginSite:
    """A folder that plays the role of site-packages for the tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifests = root.parent / (root.name + "-manifests")
        self.manifests.mkdir(exist_ok=True)

    def module(self, name: str, source: str) -> Path:
        path = self.root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def distribution(
        self,
        name: str,
        entry_points: dict[str, str],
        *,
        version: str = "1.0.0",
        group: str = "mdivicomtools.plugins",
    ) -> Path:
        dist_info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return dist_info

    def plugin(
        self,
        plugin_id: str,
        *,
        dist: str | None = None,
        ep_name: str | None = None,
        data: dict | None = None,
        marker: Path | None = None,
        run_source: str | None = None,
        **kwargs: object,
    ) -> str:
        """A complete python plugin package: a light get_plugin module and a run module.

        When `marker` is given, importing the run module creates that file, which
        is how the tests prove listing never imports run code. `run_source`
        replaces the default run module (which returns {"ok": True}).
        """
        pkg = (
            "p_"
            + plugin_id.replace("-", "_").replace(".", "_")
            + "_"
            + (dist or "d").replace("-", "_")
        )
        data = (
            data if data is not None else plugin_dict(plugin_id, run_module=f"{pkg}.run", **kwargs)
        )
        self.module(f"{pkg}.__init__", "")
        self.module(
            f"{pkg}.plugin",
            f"""
            import json
            def get_plugin():
                return json.loads({json.dumps(json.dumps(data))})
            """,
        )
        marker_line = f"open({str(marker)!r}, 'w').write('imported')" if marker else ""
        default_run = f"""
            {marker_line}
            def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
                return {{"ok": True}}
            """
        self.module(f"{pkg}.run", run_source if run_source is not None else default_run)
        self.distribution(
            dist or f"{plugin_id}-dist", {ep_name or plugin_id: f"{pkg}.plugin:get_plugin"}
        )
        return pkg

    def manifest(self, filename: str, content: str | dict) -> Path:
        path = self.manifests / filename
        text = content if isinstance(content, str) else json.dumps(content)
        path.write_text(text, encoding="utf-8")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env["MDIVICOM_PLUGIN_PATH"] = str(self.manifests)
        env.update(extra)
        return env

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MDIVICOM, *args],
            capture_output=True,
            text=True,
            env=self.env(**extra_env),
            timeout=120,
            check=False,
        )


def pip_install_target(target: Path, *projects: Path) -> None:
    """Install projects with real pip into a folder that can go on PYTHONPATH.

    The build runs in this venv (whose dev extras bring setuptools), not in an
    isolated one: setting that up asks the package index for setuptools and costs
    10-15 s per install. pip still refuses a project whose build requirements this
    venv does not satisfy (--check-build-dependencies).

    Each project is built from a private copy: pip builds in the source tree, and
    two tests (or the two Pythons CI runs at once) building the same example
    there race on its build/ and *.egg-info folders (seen once in CI).
    """
    copies = []
    for project in projects:
        copy = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent)) / project.name
        shutil.copytree(
            project, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        copies.append(copy)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--check-build-dependencies",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *map(str, copies),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for copy in copies:
        shutil.rmtree(copy.parent, ignore_errors=True)
    if done.returncode:
        raise AssertionError(
            f"pip install of {', '.join(map(str, projects))} failed:\n{done.stderr}"
        )


def interruptible() -> None:
    """preexec_fn for a child that a test will Ctrl-C.

    A shell's background job (a CI harness, `tox &`) inherits SIGINT ignored,
    and Python then never turns SIGINT into KeyboardInterrupt; the tests that
    press Ctrl-C must not depend on how they were started.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def container_manifest(plugin_id: str, container: dict, description: str | None = None) -> dict:
    """A container plugin's manifest (version 1.0.0, publisher lab) around `container`."""
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": plugin_id,
            "kind": "container",
            "version": "1.0.0",
            "publisher": "lab",
            "description": description or f"container plugin {plugin_id}",
        },
        "container": container,
    }


def count_wavs_manifest(image: str) -> dict:
    """A container plugin that counts a session's WAV files into `n`: the batch tests'
    smallest real container work, the same on every executor."""
    return container_manifest(
        "count-wavs",
        {
            "image": image,
            "pull": "never",
            "command": ["sh", "-c", "find {dataset_dir} -name '*.wav' | wc -l > {out_dir}/n"],
        },
        "count the WAV files of a session",
    )


def wait_for(path: Path, timeout: float = 60) -> None:
    """Until a file a plugin or runner writes appears (a marker that it has started)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def cli_without_dac(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90, fowner: bool = True
) -> subprocess.CompletedProcess[str]:
    """`mdivicom ARGS` as root without the capabilities that bypass permission bits, so
    an unreadable or read-only folder stops it as it stops a user who is not root.

    `fowner=False` drops CAP_FOWNER too: root may then not chmod another user's
    files either, as no other user may."""
    caps = "-dac_override,-dac_read_search" + ("" if fowner else ",-fowner")
    return subprocess.run(
        [
            "setpriv",
            f"--inh-caps={caps}",
            f"--bounding-set={caps}",
            MDIVICOM,
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def unreadable(*paths: Path, restore: int = 0o755) -> Iterator[None]:
    """`paths` mode 000 for the block, then `restore`d, so that pytest can clear them
    (with `cli_without_dac`, which makes the bits matter to root)."""
    for path in paths:
        path.chmod(0)
    try:
        yield
    finally:
        for path in paths:
            path.chmod(restore)
