"""The pip command that adds an optional part (an extra, a container backend) to
this installation, as the user installed it.

Until mdivicomtools is on PyPI every installation comes from a checkout, and a
hint of `pip install 'mdivicomtools[slurm]'` sent the user to an index that has
no such project ("No matching distribution"). pip records where a distribution
came from (`direct_url.json`, PEP 610); from a local folder, the hint names that
folder, and a container backend's own folder beside it (`backends/docker`),
since the extra only names a distribution an index would have to serve.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: the extras that name a distribution of their own, kept in the checkout's backends/
BACKEND_EXTRAS = ("docker", "podman")


def install_hint(extra: str) -> str:
    """`pip install ...` that adds `extra` (`slurm`, `rocrate`, `docker`...)."""
    checkout = installed_from()
    if checkout is None:
        return f"pip install 'mdivicomtools[{extra}]'"
    backend = checkout / "backends" / extra
    if extra in BACKEND_EXTRAS and backend.is_dir():
        return f"pip install {shlex.quote(str(backend))}"
    return f"pip install {shlex.quote(f'{checkout}[{extra}]')}"


def installed_from() -> Path | None:
    """The local folder mdivicomtools was installed from, while it still holds the
    project; None for an installation from an index (or a folder since removed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution("mdivicomtools").read_text("direct_url.json")
    except PackageNotFoundError:  # run from a source tree on sys.path
        return None
    if not text:
        return None
    try:
        origin = json.loads(text)
    except ValueError:
        return None
    url = origin.get("url") if isinstance(origin, dict) else None
    if not isinstance(url, str) or "dir_info" not in origin:  # an archive or a VCS URL
        return None
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    folder = Path(unquote(parts.path))
    return folder if (folder / "pyproject.toml").is_file() else None
