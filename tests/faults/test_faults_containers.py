"""Container plugins that leave hostile entries in their output, on both real engines.

A container may run as root: it can create FIFOs, setuid files and symlinks to
any host path in the bind-mounted output folder. None of them is read by the
runner or promoted; each test also checks that no container is left.
"""

from __future__ import annotations

import pytest
from hostile import CONTAINER_SCRIPTS

from conftest import (
    assert_earlier_intact,
    assert_no_staging,
    container_plugin,
    containers_left,
    good_earlier_run,
    last_record,
    run_cli,
)

pytestmark = pytest.mark.engines


def _fault(hsite, engine, dataset, out, name, **fmt):
    plugin = container_plugin(hsite, f"c-{name}", CONTAINER_SCRIPTS[name].format(**fmt))
    good_earlier_run(hsite, plugin, dataset, out, "--backend", engine)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--backend", engine),
    )
    return plugin, done


def _assert_refused(out, plugin, done, *named):
    assert done.returncode == 1, done.stderr
    record = last_record(out)
    assert record["status"] == "failed" and record["error"]["type"] == "UnsafeOutput"
    for text in named:
        assert text in record["error"]["message"]
    assert record["outputs"] == []
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_container_fifo_resultbundle(hsite, engine, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "fifo")
    _assert_refused(out, plugin, done, "resultbundle.json (a fifo, not a regular file)")
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []


def test_container_symlink_to_a_host_file(hsite, engine, dataset, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text('{"resultbundle_type": "TOP-SECRET-CONTENT"}')
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "symlink-host", secret=secret)
    _assert_refused(out, plugin, done, "resultbundle.json (a symlink to an absolute path)")
    record_file = out / "_runs" / f"{last_record(out)['run_id']}.json"
    assert "TOP-SECRET" not in record_file.read_text() + done.stdout + done.stderr
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []


def test_container_setuid_fifo_and_escaping_symlink(hsite, engine, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "special")
    _assert_refused(
        out,
        plugin,
        done,
        "suid (a file with the setuid or setgid bit)",
        "pipe (a fifo, not a regular file)",
        "passwd (a symlink to an absolute path)",
    )
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []
