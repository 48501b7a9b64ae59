"""common/install.py: the pip command an error gives for a missing extra names where
this installation came from."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from mdivicomtools.common import install
from mdivicomtools.common.install import install_hint


class _Dist:
    def __init__(self, direct_url: object) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        if self.direct_url is None:
            return None
        return self.direct_url if isinstance(self.direct_url, str) else json.dumps(self.direct_url)


def _installed(monkeypatch: pytest.MonkeyPatch, direct_url: object) -> None:
    monkeypatch.setattr("importlib.metadata.distribution", lambda name: _Dist(direct_url))


def _checkout(root: Path) -> Path:
    (root / "backends" / "docker").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'mdivicomtools'\n")
    return root


@pytest.mark.parametrize("editable", [True, False])
def test_an_install_from_a_checkout_is_told_to_install_from_that_checkout(
    monkeypatch, tmp_path, editable
):
    """Before the first release `pip install 'mdivicomtools[slurm]'` finds nothing on
    PyPI ("No matching distribution"); the checkout the user installed from has it."""
    root = _checkout(tmp_path / "my lab's checkout")
    _installed(monkeypatch, {"url": root.as_uri(), "dir_info": {"editable": editable}})
    assert install_hint("slurm") == "pip install " + shlex.quote(f"{root}[slurm]")
    # a container backend is a distribution of its own, in the checkout's backends/
    assert install_hint("docker") == "pip install " + shlex.quote(str(root / "backends" / "docker"))
    # one the checkout does not hold goes by the extra
    assert install_hint("podman") == "pip install " + shlex.quote(f"{root}[podman]")


@pytest.mark.parametrize(
    "direct_url",
    [
        None,  # from an index: pip writes no direct_url.json
        {"url": "https://example.org/mdivicomtools-1.0.tar.gz", "archive_info": {}},
        {"url": "git+https://example.org/lab/mdivicomtools", "vcs_info": {"vcs": "git"}},
        {"url": "file:///gone/folder", "dir_info": {}},  # the checkout was removed
        "not json",
    ],
)
def test_any_other_install_is_told_the_extra(monkeypatch, direct_url):
    _installed(monkeypatch, direct_url)
    assert install.installed_from() is None
    assert install_hint("rocrate") == "pip install 'mdivicomtools[rocrate]'"
