"""Running python plugins through the public API, `mdivicomtools.run_plugin`."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

import mdivicomtools
from mdivicomtools.errors import PluginNotFound, UsageError
from mdivicomtools.execution.base import BackendUnavailable
from mdivicomtools.records.store import read_record
from mdivicomtools.runner import ValidationFailed, run_plugin

WRITE_TWO = """
import json, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    out = pathlib.Path(out_dir)
    if dry_run:
        return {"would_write": 2}
    (out / "sub").mkdir()
    (out / "result.txt").write_text(config.get("text", "hello"))
    (out / "sub" / "n.json").write_text(json.dumps(len(list(pathlib.Path(dataset_dir).rglob("*")))))
    pathlib.Path(work_dir, "scratch").write_text("tmp")
    print("plugin says hi")
    return {"status": "ok", "files": 2}
"""

RAISE = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    open(out_dir + "/partial.txt", "w").write("half")
    raise ValueError("bad input: no audio streams")
"""

RECORD_FIELDS = {
    "schema",
    "run_id",
    "status",
    "plugin",
    "backend",
    "dataset_dir",
    "out_dir",
    "run_out_dir",
    "work_dir",
    "config",
    "config_sha256",
    "started_at",
    "finished_at",
    "duration_s",
    "exit_code",
    "error",
    "outputs",
    "resultbundles",
    "host",
    "extensions",
    "container",
}


def record_json(record, out):
    return json.loads((out / "_runs" / f"{record.run_id}.json").read_text())


def test_success_writes_outputs_and_a_complete_record(site, dataset, tmp_path):
    site.plugin("writer", dist="writer-dist", run_source=WRITE_TWO)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out, sets=["text=bonjour"])
    assert record.status == "succeeded"
    assert (out / "writer" / "result.txt").read_text() == "bonjour"
    data = record_json(record, out)
    assert set(data) >= RECORD_FIELDS
    assert data["schema"] == "mdivicomtools.run.v1"
    assert data["plugin"] == {
        "id": "writer",
        "publisher": "lab",
        "version": "1.0.0",
        "kind": "python",
        "api_version": "mdivicomtools.plugin.v0.1",
        "source": "entry_point",
        "distribution": {"name": "writer-dist", "version": "1.0.0"},
    }
    assert data["backend"]["name"] == "python" and data["backend"]["engine"].startswith("CPython")
    assert data["dataset_dir"] == str(dataset)
    assert data["out_dir"] == str(out / "writer") and data["run_out_dir"] == str(out)
    assert data["config"] == {"text": "bonjour"}
    assert data["exit_code"] == 0 and data["error"] is None and data["container"] is None
    assert data["result"] == {"status": "ok", "files": 2}
    assert set(data["host"]) == {"hostname", "platform", "python", "mdivicomtools"}
    assert data["host"]["mdivicomtools"] == mdivicomtools.__version__
    assert data["started_at"].endswith("Z") and data["finished_at"] >= data["started_at"]
    assert data["run_id"][:8].isdigit() and len(data["run_id"].split("_")[1]) == 8
    assert data["outputs"] == [
        {
            "path": "result.txt",
            "size": 7,
            "sha256": hashlib.sha256(b"bonjour").hexdigest(),
            "type": "file",
            "escaped": False,
        },
        {
            "path": "sub/n.json",
            "size": 1,
            "sha256": hashlib.sha256(b"4").hexdigest(),
            "type": "file",
            "escaped": False,
        },
    ]
    assert "plugin says hi" in (out / "_runs" / f"{record.run_id}.log").read_text()
    # nothing is left in staging, and the default work folder went with it
    assert sorted(p.name for p in out.iterdir()) == ["_runs", "writer"]


def test_progress_lines_nobody_reads_do_not_stop_the_run(site, dataset, tmp_path):
    """`mdivicom run ... 2>&1 | head -2`: the BrokenPipeError of the third progress
    line ended the run between its `running` record and its final one (left
    abandoned, its staging behind). The run finishes; the other lines are dropped."""
    site.plugin("writer", run_source=WRITE_TWO)
    shown: list[str] = []

    def progress(message: str) -> None:
        if len(shown) == 2:
            raise BrokenPipeError(32, "Broken pipe")
        shown.append(message)

    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out, progress=progress)
    assert record.status == "succeeded"
    assert read_record(out / "_runs" / f"{record.run_id}.json").status == "succeeded"
    assert (out / "writer" / "result.txt").read_text() == "hello"
    assert not (out / "_staging").exists()
    assert len(shown) == 2


def test_plugin_exception_fails_without_touching_the_earlier_output(site, dataset, tmp_path):
    site.plugin("flaky", run_source=WRITE_TWO)
    out = tmp_path / "out"
    assert run_plugin("flaky", dataset=dataset, out=out).status == "succeeded"
    before = (out / "flaky" / "result.txt").read_text()
    site.module("p_flaky_d.run", RAISE)  # the same plugin now fails
    del sys.modules["p_flaky_d.run"]  # imported by the first run in this process
    record = run_plugin("flaky", dataset=dataset, out=out, overwrite=True)
    assert record.status == "failed" and record.exit_code == 1
    assert record.error.type == "ValueError"
    assert record.error.message == "bad input: no audio streams"
    assert record.outputs == []
    assert (out / "flaky" / "result.txt").read_text() == before
    assert not (out / "flaky" / "partial.txt").exists()
    log = (out / "_runs" / f"{record.run_id}.log").read_text()
    assert "Traceback" in log and "ValueError: bad input" in log
    assert sorted(p.name for p in out.iterdir()) == ["_runs", "flaky"]


@pytest.mark.parametrize(
    ("raised", "error_type", "message"),
    [
        ("GeneratorExit('stop')", "GeneratorExit", "stop"),
        ("type('Halt', (BaseException,), {})('halt')", "Halt", "halt"),
        (
            "KeyboardInterrupt()",
            "KeyboardInterrupt",
            "the plugin raised KeyboardInterrupt with no Ctrl-C or SIGTERM sent; "
            "a plugin must return or raise an Exception",
        ),
    ],
)
def test_whatever_an_in_process_plugin_raises_is_its_failure(
    site, dataset, tmp_path, raised, error_type, message
):
    """Exceptions outside Exception escaped the runner: a traceback, the record left
    `running`, the staging folder behind. A KeyboardInterrupt no signal raised is
    the plugin's failure too, not a Ctrl-C (as under --isolate)."""
    site.plugin("odd", run_source=f"def run(*a, **k):\n    raise {raised}\n")
    out = tmp_path / "out"
    record = run_plugin("odd", dataset=dataset, out=out)
    assert record.status == "failed" and record.exit_code == 1, record
    assert (record.error.type, record.error.message) == (error_type, message)
    assert sorted(p.name for p in out.iterdir()) == ["_runs"]  # no staging left


def test_staging_the_run_could_not_remove_is_named_in_its_record(site, dataset, tmp_path):
    """What is left of a run's staging (a file nobody may remove) was said only by the
    next run that found it; the run's own record says so now."""
    site.plugin(
        "stuck",
        run_source=(
            "import pathlib, subprocess\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'r.txt').write_text('ok')\n"
            "    stuck = pathlib.Path(work_dir, 'stuck')\n"
            "    stuck.write_text('x')\n"
            "    subprocess.run(['chattr', '+i', str(stuck)], check=True)\n"
        ),
    )
    out = tmp_path / "out"
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    try:
        record = run_plugin("stuck", dataset=dataset, out=out)
    finally:
        for stuck in out.glob("_staging/*/_work/stuck"):
            subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert record.status == "succeeded", record.error
    [warning] = record.warnings
    assert warning.startswith("could not remove all of the staging folder "), warning
    assert "_work/stuck" in warning and warning.endswith(
        "`mdivicom runs clean` removes it once it is writable"
    ), warning


def test_writing_into_the_dataset_fails_the_run_and_names_the_files(site, dataset, tmp_path):
    site.plugin(
        "vandal",
        run_source="""
import os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "ok.txt").write_text("fine")
    pathlib.Path(dataset_dir, "new.txt").write_text("x")
    pathlib.Path(dataset_dir, "a.txt").write_text("changed and longer")
    os.remove(os.path.join(dataset_dir, "sessions", "ses-01", "b.txt"))
""",
    )
    out = tmp_path / "out"
    record = run_plugin("vandal", dataset=dataset, out=out)
    assert record.status == "failed"
    assert record.error.type == "DatasetModified"
    assert record.error.message == (
        "the plugin modified the dataset, which is read-only: changed a.txt; added new.txt; "
        "removed sessions/ses-01/b.txt"
    )
    assert not (out / "vandal").exists()


def test_dry_run_passes_the_flag_records_and_keeps_no_output(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out, dry_run=True)
    assert record.status == "dry_run" and record.dry_run is True
    assert record.result == {"would_write": 2}
    assert not (out / "writer").exists()
    assert read_record(out / "_runs" / f"{record.run_id}.json").status == "dry_run"


def test_existing_output_is_refused_without_overwrite(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    first = run_plugin("writer", dataset=dataset, out=out)
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin("writer", dataset=dataset, out=out)
    assert excinfo.value.problems == [
        f"'{out / 'writer'}' already exists (from run {first.run_id}); pass overwrite=True to "
        "replace it once the new run succeeds, or choose another out"
    ]
    assert len(list((out / "_runs").glob("*.json"))) == 1


def test_overwrite_replaces_only_after_success(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out, sets=["text=old"])
    (out / "writer" / "stale.txt").write_text("from an older version")
    record = run_plugin("writer", dataset=dataset, out=out, sets=["text=new"], overwrite=True)
    assert record.status == "succeeded"
    assert (out / "writer" / "result.txt").read_text() == "new"
    assert not (out / "writer" / "stale.txt").exists()


#: writes result.txt, then leaves its output folder read-only, as `cp -a` of a read-only
#: dataset folder or a tool that protects its results does
READ_ONLY_OUT = """
import os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "sub").mkdir()
    pathlib.Path(out_dir, "sub", "result.txt").write_text(config.get("text", "x"))
    os.chmod(pathlib.Path(out_dir, "sub"), 0o555)
    os.chmod(out_dir, 0o555)
"""


def test_an_output_folder_left_read_only_is_promoted_and_replaced(site, dataset, tmp_path):
    """Moving a folder into another rewrites its `..`, which needs write permission on
    it: a user who is not root got `PromotionError: ... Permission denied` after the
    plugin had succeeded, and nothing was kept. The mode is the plugin's again after."""
    from pluginsite import cli_without_dac

    site.plugin("protective", run_source=READ_ONLY_OUT)
    out = tmp_path / "out"
    for text in ("old", "new"):
        done = cli_without_dac(
            "run", "protective", "--dataset", str(dataset), "--out", str(out),
            "--set", f"text={text}", "--overwrite", env=site.env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (out / "protective" / "sub" / "result.txt").read_text() == text
        assert (out / "protective").stat().st_mode & 0o777 == 0o555
        assert (out / "protective" / "sub").stat().st_mode & 0o777 == 0o555
    assert not (out / "_staging").exists()


def test_another_publishers_output_is_refused_even_with_overwrite(site, dataset, tmp_path):
    site.plugin("sync", dist="a-dist", publisher="lab-a", run_source=WRITE_TWO)
    site.plugin("sync", dist="b-dist", ep_name="sync-b", publisher="lab-b", run_source=WRITE_TWO)
    out = tmp_path / "out"
    run_plugin("lab-a/sync", dataset=dataset, out=out)
    with pytest.raises(ValidationFailed, match="holds the output of lab-a/sync"):
        run_plugin("lab-b/sync", dataset=dataset, out=out, overwrite=True)
    assert run_plugin("lab-a/sync", dataset=dataset, out=out, overwrite=True).status == "succeeded"


def test_all_validation_problems_are_reported_together(site, tmp_path):
    site.plugin(
        "strict",
        config_schema={
            "type": "object",
            "properties": {"max_lag_s": {"type": "number"}, "ref": {"type": "string"}},
            "required": ["ref"],
            "additionalProperties": False,
        },
    )
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin(
            "strict",
            dataset=tmp_path / "nope",
            out=tmp_path / "out",
            sets=["max_lag_s=fast", "colour=red"],
        )
    assert excinfo.value.problems == [
        f"dataset '{tmp_path / 'nope'}' does not exist; give an existing dataset folder",
        "config: 'ref' is a required property",
        "config: unknown key 'colour'; the plugin's keys here: max_lag_s, ref",
        "config.max_lag_s: 'fast' is not of type 'number'",
    ]
    assert excinfo.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_a_set_value_read_as_json_where_text_is_expected_says_how_to_quote_it(
    site, dataset, tmp_path
):
    # `--set pattern=5` makes the number 5; `5 is not of type 'string'` left the user
    # to find out that VALUE is read as JSON
    site.plugin(
        "texts",
        config_schema={
            "type": "object",
            "properties": {
                "pattern": {"type": "string"},
                "label": {"type": ["string", "null"]},
                "opts": {"type": "object", "properties": {"tag": {"type": "string"}}},
                "n": {"type": "integer"},
            },
        },
    )
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin(
            "texts",
            dataset=dataset,
            out=tmp_path / "out",
            sets=["pattern=5", "label=true", "opts.tag=1.5", "n=x"],
        )
    assert excinfo.value.problems == [
        "config.label: True is not of type 'string', 'null'; "
        """to give it as text, quote it: sets 'label="true"'""",
        "config.n: 'x' is not of type 'integer'",
        """config.opts.tag: 1.5 is not of type 'string'; to give it as text, quote it: """
        """sets 'opts.tag="1.5"'""",
        """config.pattern: 5 is not of type 'string'; to give it as text, quote it: """
        """sets 'pattern="5"'""",
    ]
    quoted = run_plugin(
        "texts",
        dataset=dataset,
        out=tmp_path / "out",
        sets=['pattern="5"', 'label="true"', 'opts.tag="1.5"'],
    )
    assert quoted.status == "succeeded"


def test_invalid_config_schema_is_blamed_on_the_plugin(site, dataset, tmp_path):
    site.plugin("badschema", config_schema={"type": "nonsense"})
    with pytest.raises(ValidationFailed, match="declares an invalid config_schema"):
        run_plugin("badschema", dataset=dataset, out=tmp_path / "out")


@pytest.mark.parametrize(
    ("ref", "said"),
    [
        (
            "#/$defs/missing",
            "declares a config_schema whose $ref '/$defs/missing' cannot be resolved: "
            "PointerToNowhere: ",
        ),
        (
            "https://example.com/lag.json",
            "declares a config_schema whose $ref 'https://example.com/lag.json' cannot be "
            "resolved (mdivicomtools fetches no remote schema): Unresolvable: ",
        ),
    ],
)
def test_a_config_schema_ref_that_cannot_be_resolved_is_blamed_on_the_plugin(
    site, dataset, tmp_path, ref, said
):
    """It read as the built-in validation hook raising `_WrappedReferencingError`."""
    schema = {"type": "object", "properties": {"lag": {"$ref": ref}}}
    site.plugin("refschema", config_schema=schema)
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin("refschema", dataset=dataset, out=tmp_path / "out", config={"lag": 1})
    [problem] = excinfo.value.problems
    assert problem.startswith(f"plugin lab/refschema {said}"), problem
    assert problem.endswith("; report this to the plugin's authors")
    assert "_Wrapped" not in problem and "hook" not in problem


def test_out_inside_the_dataset_is_refused(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    for out in (dataset / "derived", dataset):
        with pytest.raises(ValidationFailed, match="is inside the dataset"):
            run_plugin("writer", dataset=dataset, out=out)


@pytest.mark.parametrize("folder", ["writer", "_staging", "_runs"])
def test_dataset_inside_what_the_run_manages_is_refused(site, dataset, tmp_path, folder):
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    inner = out / folder / "data"
    shutil.copytree(dataset, inner)
    with pytest.raises(ValidationFailed, match="which this run would replace or write"):
        run_plugin("writer", dataset=inner, out=out, overwrite=True)


def test_work_folder_is_kept_when_given_and_refused_inside_the_dataset(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", work=tmp_path / "work")
    assert record.work_dir == str(tmp_path / "work")
    assert (tmp_path / "work" / "scratch").read_text() == "tmp"
    with pytest.raises(ValidationFailed, match=r"work .* is inside the dataset"):
        run_plugin("writer", dataset=dataset, out=tmp_path / "out2", work=dataset / "w")


def test_a_work_folder_that_reaches_the_dataset_or_the_outputs_is_refused(site, dataset, tmp_path):
    """The plugin writes its work folder: one holding the dataset could delete it,
    one holding --out or inside it could change other outputs and the records,
    and a failed run would leave them damaged. Each way round is refused."""
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    cases = {
        dataset.parent: r"work .* holds the dataset",
        dataset: r"work .* is inside the dataset",
        out: r"work .* is inside out",
        out / "writer": r"work .* is inside out",
        out / "scratch": r"work .* is inside out",
    }
    for work, message in cases.items():
        with pytest.raises(ValidationFailed, match=message):
            run_plugin("writer", dataset=dataset, out=out, work=work, overwrite=True)
    # beside both is fine
    sibling = tmp_path / "elsewhere" / "work"
    run_plugin("writer", dataset=dataset, out=tmp_path / "out2", work=sibling)
    assert (sibling / "scratch").read_text() == "tmp"


def test_a_work_folder_that_is_or_goes_through_a_file_is_refused(site, dataset, tmp_path):
    """Validation passed it and the run then failed (NotADirectoryError, exit 1)."""
    site.plugin("writer", run_source=WRITE_TWO)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = {
        a_file: r"work .*a-file' exists and is not a folder",
        a_file / "work": r"work .*a-file/work' is below .*a-file', which exists and is not a",
    }
    for work, message in cases.items():
        with pytest.raises(ValidationFailed, match=message):
            run_plugin("writer", dataset=dataset, out=tmp_path / "out", work=work)
    assert not (tmp_path / "out" / "writer").exists()


def test_a_dataset_this_user_may_not_enter_is_a_validation_problem(
    site, dataset, tmp_path, monkeypatch
):
    """It was `validation hook 'mdivicomtools.validation' raised PermissionError`.
    stat() is refused by hand: the tests may run as root, whom permissions do not stop."""
    site.plugin("writer", run_source=WRITE_TWO)
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(str(dataset)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    if hasattr(pathlib, "_NormalAccessor"):  # Python 3.10's pathlib holds os.stat of its own
        monkeypatch.setattr(pathlib._NormalAccessor, "stat", staticmethod(stat))
    message = r"dataset .* cannot be read \(Permission denied\); check its permissions"
    with pytest.raises(ValidationFailed, match=message):
        run_plugin("writer", dataset=dataset, out=tmp_path / "out")


def test_out_inside_another_run_s_output_is_refused(site, dataset, tmp_path):
    """A run into a folder another run's record lists (its plugin's output, or the
    runs' own folders) would change files that record describes; beside them, or
    a batch's session folder under a run root, is fine."""
    site.plugin("writer", run_source=WRITE_TWO)
    out = tmp_path / "out"
    first = run_plugin("writer", dataset=dataset, out=out)
    for inner, message in (
        (out / "writer", rf"is inside .*writer', the output of .*/writer \(run {first.run_id}\)"),
        (out / "writer" / "deeper", r"is inside .*writer', the output of"),
        (out / "_runs" / "x", r"is inside .*_runs', which mdivicom manages"),
    ):
        with pytest.raises(ValidationFailed, match=message):
            run_plugin("writer", dataset=dataset, out=inner)
    record = run_plugin("writer", dataset=dataset, out=out / "ses-01")
    assert record.status == "succeeded"


def test_config_is_redacted_in_the_record_but_hashed_unredacted(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    config = {"api_key": "hunter2", "nested": {"token": "t"}, "text": "x"}
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", config=config)
    raw = (tmp_path / "out" / "_runs" / f"{record.run_id}.json").read_text()
    assert "hunter2" not in raw
    assert record.config == {
        "api_key": "***REDACTED***",
        "nested": {"token": "***REDACTED***"},
        "text": "x",
    }
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record.config_sha256 == hashlib.sha256(canonical.encode()).hexdigest()


def test_non_json_safe_return_value_is_dropped_with_a_warning(site, dataset, tmp_path):
    site.plugin(
        "odd",
        run_source="""
import datetime
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"when": datetime.date(2026, 1, 1)}
""",
    )
    record = run_plugin("odd", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded" and record.result is None
    assert record.warnings == [
        "the plugin's return value was not kept: result.when is a date, not a JSON value; "
        "convert it before returning: float(x), int(x) or x.tolist() for "
        "numpy values, str(path), a list for a tuple or set"
    ]


@pytest.mark.parametrize("isolate", [False, True])
def test_unimportable_callable_fails_the_run(site, dataset, tmp_path, isolate):
    site.plugin(
        "ghost",
        data={
            "meta": {
                "api_version": "mdivicomtools.plugin.v0.1",
                "id": "ghost",
                "kind": "python",
                "version": "1",
                "description": "d",
                "publisher": "lab",
            },
            "entry": {"callable": "p_no_such_module.run:run"},
        },
    )
    record = run_plugin("ghost", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    # the same type in both lanes (the child said CallableImportError)
    assert record.status == "failed" and record.error.type == "PluginImportError"
    assert "cannot import 'p_no_such_module.run'" in record.error.message


@pytest.mark.parametrize("isolate", [False, True])
def test_an_async_run_function_fails_the_run(site, dataset, tmp_path, isolate):
    # it used to be called, return a coroutine nobody awaited, and end `succeeded`
    # with nothing done
    site.plugin(
        "later",
        run_source=(
            "import pathlib\n"
            "async def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'x.txt').write_text('x')\n"
        ),
    )
    record = run_plugin("later", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "failed" and record.error.type == "PluginImportError"
    assert "is an async function" in record.error.message
    assert record.warnings == []


@pytest.mark.parametrize("isolate", [False, True])
def test_a_run_function_without_the_contracts_keywords_is_named_so(
    site, dataset, tmp_path, isolate
):
    # `def run(dataset_dir, out_dir, config)` failed with `TypeError: run() got an
    # unexpected keyword argument 'work_dir'`, which read as a bug inside the plugin
    site.plugin(
        "plain",
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config):\n"
            "    pathlib.Path(out_dir, 'x.txt').write_text('x')\n"
        ),
    )
    record = run_plugin("plain", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "failed" and record.error.type == "PluginImportError"
    assert record.error.message == (
        "entry.callable 'p_plain_d.run:run': run() must accept the keyword argument(s) "
        "work_dir, dry_run; the contract's signature is "
        "run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False)"
    )


@pytest.mark.parametrize("isolate", [False, True])
def test_a_generator_run_function_fails_the_run(site, dataset, tmp_path, isolate):
    """A `yield` left in run(): called, it returned a generator and ran none of its
    body, and the run ended `succeeded` with no output and a warning about a
    return value that was not JSON."""
    site.plugin(
        "yielder",
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'x.txt').write_text('x')\n"
            "    yield {'done': True}\n"
        ),
    )
    record = run_plugin("yielder", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "failed" and record.error.type == "PluginImportError"
    assert "is a generator function (it has a `yield`)" in record.error.message
    assert record.warnings == []


@pytest.mark.parametrize(
    ("source", "error_type", "exit_code", "message"),
    [
        (
            "import os\ndef run(*a, **k):\n    os._exit(7)\n",
            "PluginExited",
            7,
            "the plugin process exited with status 7 without returning",
        ),
        (
            "import ctypes\ndef run(*a, **k):\n    ctypes.string_at(0)\n",
            "PluginCrashed",
            139,
            "the plugin process was killed by SIGSEGV",
        ),
        (
            "def run(*a, **k):\n    raise KeyError('missing stream')\n",
            "KeyError",
            1,
            "'missing stream'",
        ),
    ],
)
def test_isolate_survives_hard_exits_and_crashes(
    site, dataset, tmp_path, source, error_type, exit_code, message
):
    site.plugin("hard", run_source=source)
    record = run_plugin("hard", dataset=dataset, out=tmp_path / "out", isolate=True)
    assert record.status == "failed"
    assert record.error.type == error_type and record.exit_code == exit_code
    assert record.error.message.startswith(message)
    assert not (tmp_path / "out" / "hard").exists()


def test_isolated_success_keeps_result_and_log(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE_TWO)
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", isolate=True)
    assert record.status == "succeeded" and record.result == {"status": "ok", "files": 2}
    assert [o.path for o in record.outputs] == ["result.txt", "sub/n.json"]
    log = (tmp_path / "out" / record.log).read_text()
    assert "plugin says hi" in log


def test_timeout_stops_the_plugin_process(site, dataset, tmp_path):
    pidfile = tmp_path / "pid"
    site.plugin(
        "sleepy",
        run_source=f"""
import os, time
def run(*a, **k):
    open({str(pidfile)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
""",
    )
    started = time.monotonic()
    record = run_plugin("sleepy", dataset=dataset, out=tmp_path / "out", timeout=1.5)
    assert time.monotonic() - started < 30
    assert record.status == "timed_out" and record.exit_code is None
    assert record.error.type == "Timeout"
    assert record.error.message == "the plugin did not finish within 1.5 s and was stopped"
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_timeout_unknown_plugin_and_backend_are_usage_errors(
    site, dataset, tmp_path, without_container_backends
):
    site.plugin("writer", run_source=WRITE_TWO)
    with pytest.raises(UsageError, match=r"^timeout must be a positive, finite number"):
        run_plugin("writer", dataset=dataset, out=tmp_path / "o", timeout=0)
    with pytest.raises(PluginNotFound, match="did you mean 'lab/writer'"):
        run_plugin("writr", dataset=dataset, out=tmp_path / "o")
    # the fixture disables the installed backends' modules: the message names them
    with pytest.raises(
        BackendUnavailable,
        match="backend 'docker' is not installed; installed backends: python; disabled hook "
        "modules, not loaded, may provide it: 'mdivicomtools-docker'",
    ):
        run_plugin("writer", dataset=dataset, out=tmp_path / "o", backend="docker")


def test_container_plugin_without_a_container_backend_is_refused(
    site, dataset, tmp_path, without_container_backends
):
    from pluginsite import plugin_dict

    site.manifest("count.json", plugin_dict("count-lines", kind="container"))
    with pytest.raises(BackendUnavailable, match="no installed backend runs container plugins"):
        run_plugin("count-lines", dataset=dataset, out=tmp_path / "o")
    with pytest.raises(BackendUnavailable, match="backend 'python' cannot run container plugins"):
        run_plugin("count-lines", dataset=dataset, out=tmp_path / "o", backend="python")


def test_float_subclasses_in_a_return_value_are_not_kept(site, dataset, tmp_path):
    """A numpy.float64 passes isinstance(x, float) but breaks JSON encoders."""
    site.plugin(
        "subclassy",
        run_source="""
class Float(float):
    pass
def run(*a, **k):
    return {"offset": Float(1.5), "ok": 1.5}
""",
    )
    record = run_plugin("subclassy", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded" and record.result is None
    assert record.warnings == [
        "the plugin's return value was not kept: result.offset is a Float, not a JSON value; "
        "convert it before returning: float(x), int(x) or x.tolist() for "
        "numpy values, str(path), a list for a tuple or set"
    ]


UNENDED = """
import sys
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    sys.stdout.write("y" * config["n"])
    sys.stdout.flush()
    if config["fail"]:
        raise ValueError("after the progress")
    return {}
"""


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
@pytest.mark.parametrize("length", [10, 70_000], ids=["short", "longer-than-a-partial-line"])
def test_a_last_line_without_a_newline_is_ended_in_the_log_and_on_the_terminal(
    site, dataset, tmp_path, isolate, length
):
    """Its end was missing when the line was longer than a partial line kept back
    (in-process) or whatever its length (isolated): the traceback was glued to it
    in the log, and the runner's next progress line on the terminal."""
    site.plugin("unended", run_source=UNENDED)
    echo = io.StringIO()
    for fail in (False, True):
        record = run_plugin(
            "unended",
            dataset=dataset,
            out=tmp_path / f"out-{fail}",
            config={"n": length, "fail": fail},
            isolate=isolate,
            echo=echo,
        )
        assert record.status == ("failed" if fail else "succeeded")
        log = (tmp_path / f"out-{fail}" / "_runs" / f"{record.run_id}.log").read_text()
        assert ("y" * length + "\n") in log
        assert echo.getvalue().endswith("y" * length + "\n")
        if fail:
            assert "\nTraceback (most recent call last):\n" in log


@pytest.mark.parametrize(
    ("raised", "error_type", "message"),
    [
        ("ValueError('a\\nb\\r\\n  c')", "ValueError", "a b c"),
        ("ValueError('z' * 100_000)", "ValueError", "z" * 397 + "..."),
        ("ValueError()", "ValueError", "ValueError"),
        (
            "type('Odd', (Exception,), {'__str__': lambda self: self.detail})()",
            "Odd",
            "(its message could not be read: its __str__ raised AttributeError)",
        ),
        (
            "SystemExit(0)",
            "SystemExit",
            "the plugin called sys.exit(0); a plugin must return or raise an Exception",
        ),
        (
            "SystemExit('bye')",
            "SystemExit",
            "the plugin called sys.exit('bye'); a plugin must return or raise an Exception",
        ),
        (
            "KeyboardInterrupt()",
            "KeyboardInterrupt",
            "the plugin raised KeyboardInterrupt with no Ctrl-C or SIGTERM sent; "
            "a plugin must return or raise an Exception",
        ),
    ],
)
@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_the_error_of_what_a_plugin_raises_is_one_line_and_the_same_in_either_lane(
    site, dataset, tmp_path, isolate, raised, error_type, message
):
    """The record promises a one-line message; the plugin's text went in as it was
    (a newline, 100 000 characters), an empty one said `ValueError()` in-process
    and `ValueError` isolated, and sys.exit(0) said `SystemExit: 0`. The log keeps
    the whole traceback."""
    site.plugin("odd", run_source=f"def run(*a, **k):\n    raise {raised}\n")
    out = tmp_path / "out"
    record = run_plugin("odd", dataset=dataset, out=out, isolate=isolate)
    assert record.status == "failed" and record.exit_code == 1, record
    assert (record.error.type, record.error.message) == (error_type, message)
    log = (out / "_runs" / f"{record.run_id}.log").read_text()
    assert "Traceback (most recent call last)" in log


LEAVES_A_THREAD = """
import pathlib, threading, time
import p_release
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    def late():
        p_release.go.wait(30)
        try:
            pathlib.Path(out_dir, "late.txt").write_text("late")
        except FileNotFoundError:  # in-process, the staging folder is gone by now
            pass
    thread = threading.Thread(target=late, name="late-writer", daemon=config["daemon"])
    thread.start()
    if config["join"]:
        p_release.go.set()
        thread.join()
    return {}
"""


@pytest.mark.parametrize(
    ("daemon", "join", "warned"),
    [(False, False, True), (False, True, False), (True, False, False)],
    ids=["left-running", "joined", "daemon"],
)
def test_a_thread_an_in_process_plugin_leaves_running_is_named_in_a_warning(
    site, dataset, tmp_path, daemon, join, warned
):
    """Python waits for such a thread at exit, and so does --isolate's child; an
    in-process run finalised without it and `mdivicom` ended it at exit: what it
    wrote was silently missing from the outputs."""
    gate = site.module("p_release", "import threading\ngo = threading.Event()\n")
    assert gate.exists()
    site.plugin("leaver", run_source=LEAVES_A_THREAD)
    import p_release

    p_release.go.clear()
    try:
        record = run_plugin(
            "leaver", dataset=dataset, out=tmp_path / "out", config={"daemon": daemon, "join": join}
        )
    finally:
        p_release.go.set()
    assert record.status == "succeeded", record.error
    thread_warnings = [w for w in record.warnings if "thread(s)" in w]
    if warned:
        assert thread_warnings == [
            "the plugin's run() returned while 1 thread(s) it started still ran "
            "('late-writer'); what they do after that is not part of the run: join them "
            "before returning (--isolate waits for them, as Python does at exit)"
        ]
    else:
        assert thread_warnings == []


def test_an_isolated_plugin_s_thread_left_running_is_waited_for(site, dataset, tmp_path):
    site.module("p_release", "import threading\ngo = threading.Event()\ngo.set()\n")
    site.plugin("leaver", run_source=LEAVES_A_THREAD)
    record = run_plugin(
        "leaver",
        dataset=dataset,
        out=tmp_path / "out",
        config={"daemon": False, "join": False},
        isolate=True,
    )
    assert record.status == "succeeded", record.error
    assert [o.path for o in record.outputs] == ["late.txt"]
    assert not [w for w in record.warnings if "thread(s)" in w]


WRITES_BESIDE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "mine.txt").write_text("kept")
    pathlib.Path(work_dir, "scratch").write_text("work")
    if config["beside"]:
        beside = pathlib.Path(out_dir).parent
        (beside / "shared.csv").write_text("lost")
        (beside / "cache").mkdir()
    return {}
"""


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
@pytest.mark.parametrize("work", [False, True], ids=["default-work", "given-work"])
def test_what_a_plugin_writes_beside_its_out_dir_is_named_in_a_warning(
    site, dataset, tmp_path, isolate, work
):
    """out_dir is the run's staging folder, whose parent is removed after the run:
    a plugin that wrote a shared file there (taking out_dir for <out>/<id>/) lost
    it without a word."""
    site.plugin("beside", run_source=WRITES_BESIDE)
    for beside in (False, True):
        record = run_plugin(
            "beside",
            dataset=dataset,
            out=tmp_path / f"out-{beside}",
            work=tmp_path / f"work-{beside}" if work else None,
            config={"beside": beside},
            isolate=isolate,
        )
        assert record.status == "succeeded", record.error
        assert [o.path for o in record.outputs] == ["mine.txt"]
        expected = (
            [
                "the plugin wrote beside its out_dir, into the run's staging folder, which is "
                "removed after the run, so it is not kept: cache/, shared.csv "
                "(write into out_dir itself)"
            ]
            if beside
            else []
        )
        assert record.warnings == expected


RETURNS_A_NAME_FROM_THE_DISK = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    name = b"caf\\xe9.wav".decode("utf-8", "surrogateescape")  # as os.listdir gives it
    return {"skipped": name, "warnings": [f"skipped {name}"]}
"""


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_a_returned_name_that_is_not_utf8_is_kept_escaped_in_either_lane(
    site, dataset, tmp_path, isolate
):
    """The isolated child could not encode its report with such a string in it and
    died: `PluginExited ... (os._exit or a crash in native code?)`."""
    site.plugin("lister", run_source=RETURNS_A_NAME_FROM_THE_DISK)
    out = tmp_path / "out"
    record = run_plugin("lister", dataset=dataset, out=out, isolate=isolate)
    assert record.status == "succeeded", record.error
    saved = read_record(out / "_runs" / f"{record.run_id}.json")
    assert saved.result == {"skipped": "caf\\xe9.wav", "warnings": ["skipped caf\\xe9.wav"]}
    assert saved.warnings == ["skipped caf\\xe9.wav"]


def test_an_entry_callable_that_is_no_function_says_what_it_is(site, dataset, tmp_path):
    """It said `is a int`."""
    from pluginsite import plugin_dict

    site.module("p_constant", "run = 3\n")
    site.plugin("constant", data=plugin_dict("constant", run_module="p_constant"))
    record = run_plugin("constant", dataset=dataset, out=tmp_path / "out")
    assert record.status == "failed" and record.error.type == "PluginImportError"
    assert record.error.message == "entry.callable 'p_constant:run' is an int"


def test_an_output_still_written_while_finalised_is_not_blamed_on_a_hook(
    site, dataset, tmp_path, monkeypatch
):
    """An in-process plugin left a process appending to its output (its processes
    are not stopped when it returns). The output changed under the finalisation
    hooks, and the warning said a finalisation hook had changed it, when none
    but the built-in inventory ran. The left-running writer is played by a write
    made just after the runner took its look at the output: a real one, timed by
    a clock, missed that moment on a loaded machine."""
    from mdivicomtools.runner import run as run_module

    site.plugin(
        "grower",
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'grow.bin').write_bytes(bytes(4096))\n"
            "    return {}\n"
        ),
    )
    looked = run_module.Run._staged_tree

    def look_then_write(self, outcome):
        tree = looked(self, outcome)
        with open(os.path.join(outcome.staging_dir, "grow.bin"), "ab") as grow:
            grow.write(bytes(4096))  # what the plugin's process wrote meanwhile
        return tree

    monkeypatch.setattr(run_module.Run, "_staged_tree", look_then_write)
    record = run_plugin("grower", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded"
    assert [(o.path, o.size) for o in record.outputs] == [("grow.bin", 8192)]
    (warning,) = record.warnings
    assert warning.startswith("the output changed while it was finalised (changed grow.bin): ")
    assert "a finalisation hook or a process the plugin left running wrote it" in warning


def test_a_large_output_gets_a_line_before_it_is_hashed(site, dataset, tmp_path, monkeypatch):
    """A plugin that wrote a 5 GB file left the run silent after `run:` for 17 s
    while the inventory hashed it, which reads as hung. A large output (by bytes or
    by files) gets a line first; a small one does not."""
    from mdivicomtools.runner import run as run_module

    site.plugin(
        "writer",
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    for index in range(3):\n"
            "        pathlib.Path(out_dir, f'{index}.bin').write_bytes(bytes(4096))\n"
        ),
    )
    shown: list[str] = []
    run_plugin("writer", dataset=dataset, out=tmp_path / "small", progress=shown.append)
    assert not any("hashing" in line for line in shown)
    monkeypatch.setattr(run_module, "HASH_NOTICE_BYTES", 8192)
    shown.clear()
    run_plugin("writer", dataset=dataset, out=tmp_path / "big", progress=shown.append)
    assert "finalise: hashing 3 output file(s), 12 KiB" in shown
    assert shown.index("finalise: hashing 3 output file(s), 12 KiB") < next(
        i for i, line in enumerate(shown) if line.startswith("finalise: succeeded")
    )
    monkeypatch.setattr(run_module, "HASH_NOTICE_BYTES", 1024**3)
    monkeypatch.setattr(run_module, "HASH_NOTICE_FILES", 3)
    shown.clear()
    run_plugin("writer", dataset=dataset, out=tmp_path / "many", progress=shown.append)
    assert "finalise: hashing 3 output file(s), 12 KiB" in shown
