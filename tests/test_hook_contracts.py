"""What a hook implementation must return and may change: one module's mistake is that
module's hook error, never a lost record, a crash or a record that cannot be read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from mdivicomtools import hookimpl
from mdivicomtools.hooks.manager import load_hooks
from mdivicomtools.model.run import OutputFile
from mdivicomtools.records.store import read_record
from mdivicomtools.runner import ValidationFailed, run_plugin
from pluginsite import MDIVICOM, interruptible, wait_for

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "out.txt").write_text("x")
"""

#: what a validation hook's own failure ends with: the way past it
FIX = "; fix that module, or skip it for a run with MDIVICOM_DISABLE_HOOKS="


def _errors(record) -> dict[str, str]:
    return {e.plugin: e.error for e in record.hook_errors}


@pytest.fixture(autouse=True)
def writer(site):
    site.plugin("writer", run_source=WRITE)


def _run(site, dataset, out, *modules):
    return run_plugin("writer", dataset=dataset, out=out, hooks=load_hooks(extra=modules))


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("problem text", "returned a str, not a list of strings (or None)"),
        (True, "returned a bool, not a list of strings (or None)"),
        ([1, 2], "returned a list holding an int, not a list of strings (or None)"),
        (["ok", None], "returned a list holding None, not a list of strings (or None)"),
    ],
)
def test_a_validation_hook_returning_no_list_stops_the_run_naming_it(
    site, dataset, tmp_path, returned, message
):
    """A string became one problem per character; True crashed (exit 1)."""

    class Bad:
        @hookimpl
        def mdivicom_validate_run(self, request):
            return returned

    with pytest.raises(ValidationFailed) as raised:
        _run(site, dataset, tmp_path / "out", ("site-rules", Bad()))
    # said as what it returned (it raised nothing), with the way past it
    problem = f"validation hook 'site-rules' {message}{FIX}site-rules"
    assert raised.value.problems == [problem]


def test_a_wrapper_s_value_is_the_validation_hooks_result(site, dataset, tmp_path):
    """A wrapper=True implementation adds a problem, as pluggy documents (its value
    was ignored); one returning garbage is reported and the inner results stand."""

    class Adds:
        @hookimpl(wrapper=True)
        def mdivicom_validate_run(self, request):
            results = yield
            return [*results, ["site rule X is not met"]]

    with pytest.raises(ValidationFailed) as raised:
        _run(site, dataset, tmp_path / "out", ("adds", Adds()))
    assert raised.value.problems == ["site rule X is not met"]

    class Garbage:
        @hookimpl(wrapper=True)
        def mdivicom_validate_run(self, request):
            yield
            return "nothing"

    with pytest.raises(ValidationFailed) as raised:
        _run(site, dataset, tmp_path / "out2", ("garbage", Garbage()))
    assert raised.value.problems == [
        "validation hook 'garbage' returned a str, not the list of results it was given"
        f"{FIX}garbage"
    ]


def test_system_exit_in_a_hook_is_its_failure_and_the_record_is_kept(site, dataset, tmp_path):
    """SystemExit went past the guards: exit 3, the record left `running`."""

    class Exits:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            raise SystemExit(3)

        @hookimpl
        def mdivicom_capture_provenance(self, outcome):
            raise SystemExit("bye")

    record = _run(site, dataset, tmp_path / "out", ("exits", Exits()))
    assert record.status == "succeeded"
    assert sorted((e.hook, e.error) for e in record.hook_errors) == [
        ("mdivicom_capture_provenance", "SystemExit: bye"),
        ("mdivicom_finalize_outputs", "SystemExit: 3"),
    ]


def test_a_finalize_hook_s_wrong_types_are_undone_and_the_record_reads_back(
    site, dataset, tmp_path
):
    """A str in outcome.outputs or an int in outcome.warnings made a record that
    `runs list` and `verify` could not read (and the CLI crash after writing it)."""

    class Sloppy:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            outcome.outputs.append("extra.txt")
            outcome.warnings.append(42)

    out = tmp_path / "out"
    record = _run(site, dataset, out, ("sloppy", Sloppy()))
    assert record.status == "succeeded"
    assert [o.path for o in record.outputs] == ["out.txt"]
    assert "42" in record.warnings
    error = _errors(record)["sloppy"]
    assert "put a str into outcome.outputs" in error or "put an int" in error, error
    assert len([e for e in record.hook_errors if e.plugin == "sloppy"]) == 2
    assert read_record(out / "_runs" / f"{record.run_id}.json").run_id == record.run_id


def test_a_provenance_hook_cannot_change_the_status_or_the_config(site, dataset, tmp_path):
    """The status is what happened (the output is already in place), and the config
    the plugin got and the record keeps is the one given."""

    class Meddles:
        @hookimpl
        def mdivicom_validate_run(self, request):
            request.config["pattern"] = "*.nothing"

        @hookimpl
        def mdivicom_capture_provenance(self, request, outcome):
            outcome.status = "failed"
            return {"ok": True}

    with pytest.raises(ValidationFailed) as raised:
        _run(site, dataset, tmp_path / "out", ("meddles", Meddles()))
    assert raised.value.problems == [
        "validation hook 'meddles' changed request.config, which hooks may only read; "
        f"undone{FIX}meddles"
    ]

    class StatusOnly:
        @hookimpl
        def mdivicom_capture_provenance(self, request, outcome):
            outcome.status = "failed"
            return {"ok": True}

    record = _run(site, dataset, tmp_path / "out2", ("status", StatusOnly()))
    assert record.status == "succeeded" and record.extensions["status"] == {"ok": True}
    assert _errors(record)["status"] == (
        "ContractBroken: set outcome.status to 'failed'; this hook may not change it; undone"
    )


def test_files_a_finalize_hook_writes_or_removes_are_what_the_record_lists(site, dataset, tmp_path):
    """A stamp written into staging was promoted but not listed, a removed file still
    listed: `verify` called the run DIFFERS. The output is listed again."""

    class Stamps:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            if outcome.status == "succeeded":
                (outcome.staging_dir / "SITE_STAMP").write_text("lab 7")
                (outcome.staging_dir / "out.txt").unlink()
                outcome.outputs.append(OutputFile(path="ghost.txt", size=1, sha256="0" * 64))

    out = tmp_path / "out"
    record = _run(site, dataset, out, ("stamps", Stamps()))
    assert record.status == "succeeded"
    assert [o.path for o in record.outputs] == ["SITE_STAMP"]
    assert sorted(p.name for p in (out / "writer").iterdir()) == ["SITE_STAMP"]
    # the warning names the hook and the plugin's files it changed; the file it
    # added is its right, and in the run log
    assert record.warnings == [
        "finalisation hook 'stamps' changed what the plugin wrote (removed out.txt); "
        "the output was listed again"
    ]
    assert (
        "finalisation hook 'stamps' wrote into the output (added SITE_STAMP); "
        "the output was listed again"
    ) in (out / record.log).read_text()
    from mdivicomtools import verify_out

    [report] = verify_out(out)
    assert report.ok, report


def test_a_checksum_hook_s_file_is_listed_without_a_warning_and_others_are_still_seen(
    site, dataset, tmp_path, monkeypatch
):
    """A site hook writing a checksum list into the output, as the docs allow, got
    `the output changed while it was finalised (added SHA256SUMS): a finalisation
    hook or a process the plugin left running wrote it` on every run. Whose change
    it was is now told by a look around each installed hook: the hook's file is in
    the log, a hook overwriting the plugin's file is named, and a file written
    while no hook ran (a process the plugin left running, played by a write just
    after the runner's first look) still gets the warning."""
    import hashlib

    from mdivicomtools.runner import run as run_module

    class Checksums:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            files = sorted(p for p in outcome.staging_dir.iterdir() if p.name != "SHA256SUMS")
            (outcome.staging_dir / "SHA256SUMS").write_text(
                "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files)
            )

    class Wrapped:  # a wrapper's code after `yield` is watched too
        @hookimpl(wrapper=True)
        def mdivicom_finalize_outputs(self, outcome):
            yield
            (outcome.staging_dir / "out.txt").write_text("rewritten by the site")

    out = tmp_path / "quiet"
    record = _run(site, dataset, out, ("checksums", Checksums()))
    assert record.status == "succeeded" and record.warnings == []
    assert [o.path for o in record.outputs] == ["SHA256SUMS", "out.txt"]
    assert (out / "writer" / "SHA256SUMS").read_text().endswith("  out.txt\n")
    assert (
        "finalisation hook 'checksums' wrote into the output (added SHA256SUMS)"
        in (out / record.log).read_text()
    )

    record = _run(site, dataset, tmp_path / "wrapped", ("wrapped", Wrapped()))
    assert record.warnings == [
        "finalisation hook 'wrapped' changed what the plugin wrote (changed out.txt); "
        "the output was listed again"
    ]

    looked = run_module.Run._staged_tree

    def look_then_write(self, outcome):
        tree = looked(self, outcome)
        (outcome.staging_dir / "late.bin").write_bytes(bytes(10))  # no hook's doing
        return tree

    monkeypatch.setattr(run_module.Run, "_staged_tree", look_then_write)
    record = _run(site, dataset, tmp_path / "late", ("checksums", Checksums()))
    assert [o.path for o in record.outputs] == ["SHA256SUMS", "late.bin", "out.txt"]
    assert record.warnings == [
        "the output changed while it was finalised (added late.bin): a finalisation hook "
        "or a process the plugin left running wrote it; it was listed again"
    ]


def test_a_hook_writing_into_the_final_output_folder_is_told_it_is_lost(site, dataset, tmp_path):
    """The final folder is the previous run's output until this run's is promoted
    over it: a stamp a finalisation hook wrote there vanished without a word. After
    promotion (provenance), a file written there is one the record does not list."""

    class Archives:
        @hookimpl
        def mdivicom_finalize_outputs(self, request, outcome):
            if request.out_dir.is_dir():
                (request.out_dir / "ARCHIVED").write_text("copied to the archive")

        @hookimpl
        def mdivicom_capture_provenance(self, request, outcome):
            (request.out_dir / "PROVENANCE").write_text("late")
            return {}

    out = tmp_path / "out"
    first = _run(site, dataset, out, ("archives", Archives()))
    assert _errors(first)["archives"] == (
        f"ContractBroken: wrote into request.out_dir ({out / 'writer'}), the plugin's output "
        "folder, which only the runner writes: the record's list of outputs no longer "
        "matches it; a finalisation hook writes into outcome.staging_dir"
    )
    second = run_plugin(
        "writer",
        dataset=dataset,
        out=out,
        overwrite=True,
        hooks=load_hooks(extra=[("archives", Archives())]),
    )
    lost = [e.error for e in second.hook_errors if e.hook == "mdivicom_finalize_outputs"]
    assert lost == [
        f"ContractBroken: wrote into request.out_dir ({out / 'writer'}), the plugin's output "
        "folder, which only the runner writes: this run's output replaces it, and what is "
        "written there is lost; a finalisation hook writes into outcome.staging_dir"
    ]
    assert not (out / "writer" / "ARCHIVED").exists()


def test_a_finalize_hook_that_only_edits_the_list_is_named_so(site, dataset, tmp_path):
    class Lists:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            outcome.outputs.append(OutputFile(path="ghost.txt", size=1, sha256="0" * 64))

    record = _run(site, dataset, tmp_path / "out", ("lists", Lists()))
    assert [o.path for o in record.outputs] == ["out.txt"]
    assert record.warnings == [
        "a finalisation hook changed outcome.outputs; the output was listed again"
    ]


def test_a_failed_run_lists_no_outputs(site, dataset, tmp_path):
    """A run a finalisation hook failed kept the inventory of what it never promoted;
    `runs export` then copied an earlier run's files as its result."""

    class Fails:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            outcome.fail("SiteRule", "no")

    record = _run(site, dataset, tmp_path / "out", ("fails", Fails()))
    assert record.status == "failed" and record.outputs == []


def test_a_misbehaving_backend_hook_costs_only_itself(site, dataset, tmp_path):
    """One backend instead of a list broke every run, python plugins' too; a backend
    whose availability() raised broke `backends list` and every `--backend`."""

    class One:
        name = "solo"
        kinds = frozenset({"python"})

        def availability(self):
            raise ConnectionError("slurmctld not reachable")

        def execute(self, request, outcome, log):
            outcome.status = "succeeded"

    class Single:
        @hookimpl
        def mdivicom_execution_backends(self):
            return One()

    class Listed:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [One()]

    record = _run(site, dataset, tmp_path / "out", ("single", Single()))
    assert record.status == "succeeded"
    assert _errors(record)["single"] == (
        "ContractBroken: returned a One, not a list of backends (or None); return it in a list"
    )
    registry = load_hooks(extra=[("listed", Listed())]).get_backends()
    [solo] = [item for item in registry.items() if item.name == "solo"]
    assert not solo.available
    assert solo.reason == "its availability() raised ConnectionError: slurmctld not reachable"


def test_backends_yielded_or_returned_as_any_iterable_are_used(site, dataset, tmp_path):
    """The hookspec says `Iterable[ExecutionBackend]`, yet a module that yielded its
    backend (`returned a generator, not a list of backends`) or returned a set of
    them provided none, and `--backend NAME` said it was not installed. A generator
    that raises half-way is that module's failure; what it yielded is not used."""
    from mdivicomtools.execution.base import Availability

    class Inline:
        kinds = frozenset({"python"})

        def __init__(self, name):
            self.name = name

        def availability(self):
            return Availability(available=True, engine=f"{self.name} 1")

        def execute(self, request, outcome, log):
            (outcome.staging_dir / "out.txt").write_text(self.name)
            outcome.status, outcome.exit_code = "succeeded", 0

    class Yields:
        @hookimpl
        def mdivicom_execution_backends(self):
            yield Inline("yielded")

    class Set:
        @hookimpl
        def mdivicom_execution_backends(self):
            return {Inline("in-a-set")}

    class HalfWay:
        @hookimpl
        def mdivicom_execution_backends(self):
            yield Inline("half")
            raise ImportError("libslurm.so.40: cannot open shared object file")

    modules = (("yields", Yields()), ("set", Set()), ("halfway", HalfWay()))
    for name in ("yielded", "in-a-set"):
        out = tmp_path / name
        record = run_plugin(
            "writer", dataset=dataset, out=out, backend=name, hooks=load_hooks(extra=modules)
        )
        assert record.status == "succeeded", record.error
        assert record.backend.name == name and record.backend.engine == f"{name} 1"
        assert (out / "writer" / "out.txt").read_text() == name
        assert _errors(record) == {
            "halfway": "ImportError: libslurm.so.40: cannot open shared object file"
        }
    registry = load_hooks(extra=modules).get_backends()
    assert "half" not in {item.name for item in registry.items()}


def test_a_backend_that_says_nothing_is_a_failure_with_a_reason(site, dataset, tmp_path):
    """A site's execute() that set nothing gave `failed` with no error at all, and the
    engine its availability() named was not recorded."""

    class Silent:
        name = "silent"
        kinds = frozenset({"python"})

        def availability(self):
            from mdivicomtools.execution.base import Availability

            return Availability(available=True, engine="echo 1")

        def preflight(self, request):
            return []

        def execute(self, request, outcome, log):
            return None

    class Provides:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [Silent()]

    record = run_plugin(
        "writer",
        dataset=dataset,
        out=tmp_path / "out",
        backend="silent",
        hooks=load_hooks(extra=[("silent", Provides())]),
    )
    assert record.status == "failed"
    assert record.error.type == "BackendError"
    assert record.error.message == (
        "the silent backend (hook module 'silent') ended the run without a status or an error"
    )
    assert record.backend.engine == "echo 1"


class _Site:
    """A site backend for python plugins whose execute() runs `fill(outcome)`."""

    name = "site"
    kinds = frozenset({"python"})

    def __init__(self, fill=None, preflight=None):
        self.fill = fill
        self.check = preflight

    def availability(self):
        from mdivicomtools.execution.base import Availability

        return Availability(available=True, engine="site 1")

    def preflight(self, request):
        return self.check() if self.check is not None else []

    def execute(self, request, outcome, log):
        self.fill(outcome)


def _on_site(dataset, out, backend):
    class Provides:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [backend]

    return run_plugin(
        "writer",
        dataset=dataset,
        out=out,
        backend=backend.name,
        hooks=load_hooks(extra=[("lab-site", Provides())]),
    )


def _set(**values):
    def fill(outcome):
        for key, value in values.items():
            setattr(outcome, key, value)

    return fill


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (
            {"status": "failed", "error": "no such image"},
            "set outcome.error to a str; use outcome.fail(type, message)",
        ),
        ({"status": "ok"}, "set outcome.status to 'ok'; execute sets one of succeeded, failed"),
        ({"status": "running"}, "set outcome.status to 'running'"),
        ({"status": "interrupted"}, "(on KeyboardInterrupt it cleans up and re-raises)"),
        ({"status": "succeeded", "exit_code": "0"}, "set outcome.exit_code to a str"),
        ({"status": "succeeded", "container": {"image": "x"}}, "set outcome.container to a dict"),
    ],
)
def test_a_backend_that_breaks_the_outcome_contract_fails_the_run_naming_its_module(
    site, dataset, tmp_path, values, problem
):
    """A site backend's string in outcome.error crashed the runner ("internal error")
    and left the record `running` for ever; an unknown status or a str exit code was
    written into a record that does not read back."""
    record = _on_site(dataset, tmp_path / "out", _Site(_set(**values)))
    assert record.status == "failed"
    assert record.error.type == "BackendError"
    assert record.error.message.startswith(
        "the site backend (hook module 'lab-site') broke the backend contract: "
    )
    assert problem in record.error.message
    assert record.exit_code is None and record.container is None and record.outputs == []
    on_disk = read_record(tmp_path / "out" / "_runs" / f"{record.run_id}.json")
    assert on_disk.status == "failed" and on_disk.error == record.error


def test_a_backend_result_that_is_not_json_safe_is_dropped_with_a_warning(site, dataset, tmp_path):
    record = _on_site(dataset, tmp_path / "out", _Site(_set(status="succeeded", result={1, 2})))
    assert record.status == "succeeded" and record.result is None
    assert record.warnings == [
        "the site backend (hook module 'lab-site') set a result that was not kept: "
        "result is a set, not a JSON value"
    ]


def test_a_backend_whose_execute_or_preflight_raises_is_named_with_its_module(
    site, dataset, tmp_path
):
    def boom(outcome):
        raise RuntimeError("apptainer: FATAL: image not found")

    record = _on_site(dataset, tmp_path / "out", _Site(boom))
    assert record.error.message == (
        "the site backend (hook module 'lab-site') failed: apptainer: FATAL: image not found"
    )

    def raises():
        raise OSError("cache unreadable")

    with pytest.raises(ValidationFailed) as failed:
        _on_site(dataset, tmp_path / "out", _Site(_set(status="succeeded"), raises))
    assert failed.value.problems == [
        "the site backend (hook module 'lab-site'): its preflight() raised OSError: cache "
        "unreadable; fix or disable (MDIVICOM_DISABLE_HOOKS) that module"
    ]
    with pytest.raises(ValidationFailed) as failed:
        _on_site(dataset, tmp_path / "out", _Site(_set(status="succeeded"), lambda: {"x"}))
    assert failed.value.problems == [
        "the site backend (hook module 'lab-site') returned a set, not a list of problems (strings)"
    ]


def _wrong(**attributes):
    backend = _Site(_set(status="succeeded"))
    for key, value in attributes.items():
        setattr(backend, key, value)
    return backend


@pytest.mark.parametrize(
    ("backends", "error"),
    [
        (
            [_wrong(name=None)],
            "returned a backend whose name is None; `name` must be a non-empty string",
        ),
        (
            [_wrong(name="")],
            "returned a backend whose name is ''; `name` must be a non-empty string",
        ),
        (
            [_wrong(kinds="python")],
            "returned backend 'site' with kinds 'python'; `kinds` must be a non-empty set",
        ),
        ([_wrong(execute=None)], "returned backend 'site' whose execute is not a method"),
        ([_wrong(), _wrong()], "returned a second backend named 'site'; each name once"),
        ([object()], "returned an object, not an ExecutionBackend (it has no name, kinds,"),
    ],
)
def test_a_backend_of_the_wrong_shape_is_not_taken_and_its_module_is_named(backends, error):
    """A name that was not a string crashed `backends list` and every run (internal
    error); `kinds = "python"` listed the kinds p,h,o,... and ran by accident; one
    module returning a name twice was called a conflict between modules."""

    class Provides:
        @hookimpl
        def mdivicom_execution_backends(self):
            return backends

    registry = load_hooks(extra=[("lab-site", Provides())]).get_backends()
    assert [item.name for item in registry.items()].count("site") == (
        1 if len(backends) == 2 else 0
    )
    assert "site" not in registry.conflicts
    [reported] = [e for e in registry.errors if e.plugin == "lab-site"]
    assert reported.hook == "mdivicom_execution_backends"
    assert reported.error.startswith(error)


def test_an_availability_of_the_wrong_type_names_the_module_to_fix():
    class Provides:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [_wrong(availability=lambda: {"available": True})]

    registry = load_hooks(extra=[("lab-site", Provides())]).get_backends()
    [item] = [item for item in registry.items() if item.name == "site"]
    assert not item.available
    assert item.reason == (
        "its availability() returned a dict, not an Availability (mdivicomtools.execution.base)"
    )
    assert item.fix == "fix or disable (MDIVICOM_DISABLE_HOOKS) the hook module lab-site"


def test_two_hook_modules_of_one_name_say_so_in_one_line():
    class A:
        @hookimpl
        def mdivicom_capture_provenance(self):
            return {}

    hooks = load_hooks(extra=[("prov", A()), ("prov", A())])
    [broken] = hooks.broken
    assert broken.error == (
        "another hook module is already registered as 'prov' (extra); hook module names "
        "(entry point names) must be unique: rename one"
    )


def _ctrl_c_once_started(site, started, *args: str) -> tuple[int, str, str]:
    """`mdivicom ARGS` in a session of its own, sent Ctrl-C (to the whole group, as a
    terminal does) once `started` exists: (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [MDIVICOM, *args],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
        start_new_session=True,
    )
    wait_for(started)
    begun = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - begun < 20, "the hook was not interrupted"
    return proc.returncode, stdout, stderr


SLOW_HOOK = """
import pathlib, time
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_{hook}(outcome):
    pathlib.Path({started!r}).write_text("x")
    time.sleep(60)
"""


@pytest.mark.parametrize(
    ("hook", "status"),
    [("finalize_outputs", "interrupted"), ("capture_provenance", "succeeded")],
)
def test_ctrl_c_stops_a_hung_hook_and_the_record_says_what_happened(
    site, dataset, tmp_path, hook, status
):
    """The hooks ran with Ctrl-C held back: a hung one could only be killed. A hung
    finalisation hook is now interrupted before anything is promoted; a hung
    provenance hook is cut short after the output is in place. Either way the command
    ends as every command a signal stopped does (exit 130 after one `Error:` line):
    a succeeded record must not make a script go on past the person's Ctrl-C."""
    started = tmp_path / "started"
    site.module("h_slowhook", SLOW_HOOK.format(hook=hook, started=str(started)))
    site.distribution("slow-hooks", {"slowhook": "h_slowhook"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    returncode, stdout, stderr = _ctrl_c_once_started(
        site, started, "run", "writer", "--dataset", str(dataset), "--out", str(out), "--json"
    )
    assert returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "Error: interrupted by Ctrl-C (SIGINT)", stderr
    record = json.loads(stdout)
    assert record["status"] == status, record
    # the built-in host facts are kept either way (the host hook runs first)
    assert record["host"]["hostname"], record
    if status == "interrupted":
        # the hung module is named, so the reader knows which package to fix
        assert record["error"]["message"] == (
            "interrupted by Ctrl-C (SIGINT) while the outputs were finalised "
            "in hook module 'slowhook'"
        )
        assert not (out / "writer").exists() and record["outputs"] == []
        [skipped] = [e for e in record["hook_errors"] if e["plugin"] == "(interrupted)"]
        assert skipped["error"] == (
            "interrupted by Ctrl-C (SIGINT) before the provenance hooks were called; "
            "extensions are left out"
        )
    else:
        assert (out / "writer" / "out.txt").exists()
        [cut] = [e for e in record["hook_errors"] if e["plugin"] == "slowhook"]
        assert cut == {
            "hook": "mdivicom_capture_provenance",
            "plugin": "slowhook",
            "error": "interrupted by Ctrl-C (SIGINT) in hook module 'slowhook'; the "
            "provenance of the hooks that had not returned is left out",
        }


HUNG_VALIDATION = """
import pathlib, time
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_run(request):
    pathlib.Path({started!r}).write_text("x")
    time.sleep(60)
"""


def test_ctrl_c_in_a_hung_validation_hook_names_it(site, dataset, tmp_path):
    """Nothing has run yet, so there is no record; the one line said only
    `interrupted by Ctrl-C (SIGINT)`, and with several site validators nobody
    knew which had hung."""
    started = tmp_path / "started"
    site.module("h_slowcheck", HUNG_VALIDATION.format(started=str(started)))
    site.distribution("slow-check", {"consent": "h_slowcheck"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    returncode, _, stderr = _ctrl_c_once_started(
        site, started, "run", "writer", "--dataset", str(dataset), "--out", str(out)
    )
    assert returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        "Error: interrupted by Ctrl-C (SIGINT) while validation hook 'consent' ran"
    )
    assert not list(out.glob("_runs/*.json"))


def test_provenance_that_returned_before_a_hung_hook_is_kept(site, dataset, tmp_path):
    """Ctrl-C in one site's provenance hook costs that module's extensions, not those
    of the modules that had already returned."""
    started = tmp_path / "started"
    site.module("h_slowprov", SLOW_HOOK.format(hook="capture_provenance", started=str(started)))
    site.module(
        "h_quickprov",
        "from mdivicomtools import hookimpl\n"
        "@hookimpl(tryfirst=True)\n"
        "def mdivicom_capture_provenance():\n"
        "    return {'lab': 'interaction-lab'}\n",
    )
    site.distribution(
        "prov-hooks",
        {"slowprov": "h_slowprov", "quickprov": "h_quickprov"},
        group="mdivicomtools.hooks",
    )
    out = tmp_path / "out"
    returncode, stdout, stderr = _ctrl_c_once_started(
        site, started, "run", "writer", "--dataset", str(dataset), "--out", str(out), "--json"
    )
    assert returncode == 130, stderr  # the output is in place, but the command was stopped
    record = json.loads(stdout)
    assert record["status"] == "succeeded"
    assert record["extensions"] == {"quickprov": {"lab": "interaction-lab"}}
    assert [e["plugin"] for e in record["hook_errors"]] == ["slowprov"]
    assert record["host"]["hostname"]


CHATTY_BACKEND = """
import os
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability


class Chatty:
    name = "chatty"
    kinds = frozenset({"python"})

    def availability(self):
        return Availability(available=True, engine="chatty 1")

    def execute(self, request, outcome, log):
        print("starting the wrapper")
        os.system("echo the wrapper inherited stdout")
        outcome.status = "succeeded"


@hookimpl
def mdivicom_execution_backends():
    return [Chatty()]
"""


def test_what_a_backend_prints_goes_to_the_log_not_into_json(site, dataset, tmp_path):
    """A backend's print() and a tool it started with inherited stdout landed on
    stdout ahead of the record, so `mdivicom run --json` printed no JSON document."""
    site.module("p_chatty_hooks", CHATTY_BACKEND)
    site.distribution("chatty", {"chatty": "p_chatty_hooks"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    done = site.cli(
        "run", "writer", "--dataset", str(dataset), "--out", str(out), "--backend", "chatty",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["backend"] == {"name": "chatty", "engine": "chatty 1"}
    log = (out / record["log"]).read_text()
    assert "starting the wrapper\n" in log and "the wrapper inherited stdout\n" in log
    assert "starting the wrapper" in done.stderr  # still shown live


def test_a_backend_that_swallows_the_interrupt_still_stops_the_run(site, dataset, tmp_path):
    """A site backend that caught the KeyboardInterrupt of Ctrl-C or SIGTERM (to kill
    its job) and returned `failed` turned the user's stop into an ordinary failure:
    exit 1, and a batch went on with its next sessions."""
    from mdivicomtools.runner import RunInterrupted

    def swallow(outcome):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            outcome.fail("Stopped", "the job was cancelled")

    with pytest.raises(RunInterrupted) as stopped:
        _on_site(dataset, tmp_path / "out", _Site(swallow))
    record = stopped.value.record
    assert record.status == "interrupted"
    assert record.error.message == "interrupted by SIGTERM"
    # what a notebook's traceback shows (it was the bare run id)
    assert str(stopped.value) == (
        f"run {record.run_id} of {record.plugin.ref} was interrupted by SIGTERM; its record "
        f"is {tmp_path / 'out' / '_runs' / (record.run_id + '.json')}"
    )
    assert record.warnings == [
        "SIGTERM arrived while the site backend (hook module 'lab-site') ran the plugin, and "
        "its execute() returned instead of re-raising the KeyboardInterrupt; the run is "
        "recorded interrupted (a backend cleans up and re-raises)"
    ]
