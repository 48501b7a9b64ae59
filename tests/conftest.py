from __future__ import annotations

import importlib
import os
import signal
import sys

import pytest

from engines import ENGINES, need_engine
from pluginsite import PluginSite


def pytest_configure(config) -> None:
    """In a pytest-xdist worker, fork's warning about threads is about xdist's own.

    The worker talks to the controller from a thread that execnet starts below
    `threading` (so the local executor, which forks only while
    threading.active_count() is 1, cannot see it), and Python 3.12+ warns at
    every fork. The forked child never touches that thread's channel. Run
    without xdist (`-n 0`), the warning is shown as before.
    """
    _signals_as_from_a_terminal()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        config.addinivalue_line(
            "filterwarnings",
            r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork"
            r"(pty)?\(\) may lead to deadlocks:DeprecationWarning",
        )


def _signals_as_from_a_terminal() -> None:
    """Give the suite, and the commands it starts, Ctrl-C, Ctrl-\\ and SIGHUP as a
    terminal does.

    A suite started in the background (`scripts/test.sh` runs two side by side
    with `&`) has SIGINT and SIGQUIT ignored, and one started under `nohup` (a
    CI job detached from its terminal) SIGHUP. The runner rightly keeps an ignored
    signal ignored, so every test that presses Ctrl-C in-process or closes a
    command's terminal waited for a run that went on. The tests of nohup and of
    background jobs set the ignore themselves.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)


def pytest_collection_modifyitems(config, items) -> None:
    """MDIVICOM_TEST_MODULE_ORDER=reversed runs the test files last first.

    scripts/test.sh sets it for every other suite it runs side by side: the
    suite is half waiting on engines (container and fault tests) and half
    number crunching (sync-audio), and two suites in the same order crunch at
    the same time on a 2-core machine while at other times both wait. A
    file's own tests keep their order.
    """
    if os.environ.get("MDIVICOM_TEST_MODULE_ORDER") != "reversed":
        return
    files = list(dict.fromkeys(item.nodeid.split("::")[0] for item in items))
    rank = {name: -index for index, name in enumerate(files)}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


@pytest.fixture
def site(tmp_path, monkeypatch) -> PluginSite:
    """A fresh plugin site, visible to this process and to `mdivicom` subprocesses."""
    plugin_site = PluginSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(plugin_site.root))
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", str(plugin_site.manifests))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield plugin_site
    for name in set(sys.modules) - before:
        if name.startswith("p_"):
            del sys.modules[name]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Each real container engine in turn; skipped or failed per MDIVICOM_REQUIRE_ENGINES."""
    need_engine(request.param)
    return request.param


@pytest.fixture
def dataset(tmp_path):
    """A small dataset folder: two files, one in a sub-folder."""
    root = tmp_path / "dataset"
    (root / "sessions" / "ses-01").mkdir(parents=True)
    (root / "a.txt").write_text("one\ntwo\n")
    (root / "sessions" / "ses-01" / "b.txt").write_text("three\n")
    return root


@pytest.fixture
def without_container_backends(monkeypatch):
    """Leave the installed docker and podman backends out, as if not installed."""
    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "mdivicomtools-docker,mdivicomtools-podman")
