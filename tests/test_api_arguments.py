"""Arguments a notebook passes to the Python API, refused before anything runs
when they would otherwise run somewhere or something else than meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdivicomtools import BatchOptions, RunOptions, rerun, run_batch, run_plugin, verify_out
from mdivicomtools.errors import EmptyPath, UsageError
from mdivicomtools.runner.config import ConfigError


@pytest.fixture
def ran(site, dataset, tmp_path, monkeypatch):
    """One succeeded run under tmp_path/out, with the current folder elsewhere."""
    site.plugin("hello")
    record = run_plugin("hello", dataset=str(dataset), out=str(tmp_path / "out"))
    assert record.status == "succeeded"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return record


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda ds, out: run_plugin("hello", dataset=ds, out=""), "out"),
        (lambda ds, out: run_plugin("hello", dataset="", out=out), "dataset"),
        (lambda ds, out: run_plugin("hello", dataset=ds, out=out, work=""), "work"),
        (lambda ds, out: run_batch("hello", dataset=ds, out="", sessions="*"), "out"),
        (lambda ds, out: verify_out(""), "out"),
        (lambda ds, out: rerun("", "latest"), "out"),
        (lambda ds, out: rerun(out, "latest", new_out=""), "new_out"),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_the_current_folder(
    ran, dataset, tmp_path, call, name
):
    with pytest.raises(EmptyPath, match=f"^{name} is an empty path") as raised:
        call(str(dataset), str(tmp_path / "out"))
    assert isinstance(raised.value, UsageError) and raised.value.exit_code == 2
    assert list(Path.cwd().iterdir()) == []  # nothing ran in, or was read from, here


def test_sets_as_one_string_is_refused_rather_than_split_into_characters(ran, dataset, tmp_path):
    with pytest.raises(TypeError, match=r"sets=\['x=1'\]"):
        RunOptions(dataset=str(dataset), out=str(tmp_path / "out"), sets="x=1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sets=\['x=1'\]"):
        rerun(tmp_path / "out", "latest", sets="x=1")


def test_config_may_be_a_path_to_a_config_file(site, dataset, tmp_path):
    site.plugin(
        "echo",
        run_source="def run(dataset_dir, out_dir, config, **kw):\n    return config\n",
    )
    settings = tmp_path / "settings.json"
    settings.write_text('{"max_lag_s": 5}')
    record = run_plugin("echo", dataset=dataset, out=tmp_path / "out", config=settings)
    assert record.status == "succeeded" and record.result == {"max_lag_s": 5}
    with pytest.raises(TypeError, match=r"RunOptions\.config must be a dict"):
        RunOptions(dataset=str(dataset), out=str(tmp_path / "out"), config=[("a", 1)])  # type: ignore[arg-type]


def test_a_numpy_timeout_is_taken_as_seconds(site, dataset, tmp_path):
    """A notebook's `timeout=np.float64(5)` failed with msgspec's `Encoding objects of
    type numpy.float64 is unsupported` once the record was written."""
    import numpy as np

    site.plugin("hello")
    for timeout in (np.float64(30), np.int64(30)):
        options = RunOptions(dataset=str(dataset), out=str(tmp_path / "o"), timeout=timeout)
        assert type(options.timeout) is float and options.timeout == 30.0
    record = run_plugin(
        "hello", dataset=str(dataset), out=str(tmp_path / "out"), timeout=np.float64(30)
    )
    assert record.status == "succeeded" and record.timeout_s == 30.0


def test_numpy_numbers_in_batch_options_reach_the_summary_as_plain_numbers(site, tmp_path):
    """`jobs=np.int64(2)` (a value from a DataFrame) ran every session and then lost the
    batch's summary to msgspec's `Encoding objects of type numpy.int64 is unsupported`."""
    import numpy as np

    from mdivicomtools.authoring.sampledata import make_sample_dataset

    site.plugin("hello")
    study = make_sample_dataset(tmp_path / "study", sessions=2)
    summary = run_batch(
        "hello",
        dataset=study,
        out=tmp_path / "out",
        sessions="ses-*",
        jobs=np.int64(2),
        retries=np.int64(0),
    )
    assert summary.status == "succeeded" and summary.totals == {"succeeded": 2}
    assert type(summary.jobs) is int and summary.jobs == 2
    assert summary.path.is_file()
    options = BatchOptions(sessions="*", jobs=2.0, slurm_cpus=np.int32(4))  # type: ignore[arg-type]
    assert (type(options.jobs), type(options.slurm_cpus)) == (int, int)


def test_numpy_container_limits_are_stored_as_plain_numbers():
    """`cpus=np.int64(2)` left the run `abandoned`: its `running` record was written and
    the next one could not be encoded; `stop_grace=np.int64(3)` failed before that with
    numpy's `The truth value of an empty array is ambiguous`."""
    import numpy as np

    options = RunOptions(
        dataset="d", out="o", cpus=np.int64(2), stop_grace=np.int64(3), attempt=np.int64(1)
    )
    assert (type(options.cpus), type(options.stop_grace), type(options.attempt)) == (
        float,
        float,
        int,
    )
    assert (options.cpus, options.stop_grace, options.attempt) == (2.0, 3.0, 1)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: BatchOptions(sessions=["ses-01", "ses-02"]),
            r"^BatchOptions\.sessions must be one shell-style pattern .*"
            r"got \['ses-01', 'ses-02'\]$",
        ),
        (
            lambda: BatchOptions(sessions="*", jobs="2"),
            r"^BatchOptions\.jobs must be a whole number of sessions at a time, got '2'$",
        ),
        (
            lambda: BatchOptions(sessions="*", jobs=1.5),
            r"^BatchOptions\.jobs must be a whole number of sessions at a time, got 1\.5$",
        ),
        (
            lambda: BatchOptions(sessions="*", retries=True),
            r"^BatchOptions\.retries must be a whole number of tries, got True$",
        ),
        (
            lambda: BatchOptions(sessions="*", slurm_directives="--qos=low"),
            r"slurm_directives=\['--qos=low'\]$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", cpus="2"),
            r"^RunOptions\.cpus must be a number of CPUs, got '2'$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", timeout="5"),
            r"^RunOptions\.timeout must be a number of seconds, got '5'$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", isolate="no"),
            r"^RunOptions\.isolate must be True or False, got 'no'$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", dry_run="yes"),
            r"^RunOptions\.dry_run must be True or False, got 'yes'$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", backend=3),
            r"^RunOptions\.backend must be a string naming a backend \('python', 'docker' "
            r"or 'podman'\), got 3$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", memory=1000),
            r"^RunOptions\.memory must be a string such as '2g', got 1000$",
        ),
        (
            lambda: RunOptions(dataset="d", out="o", sets=["max_lag_s=5", 3]),
            r"^RunOptions\.sets must be a list of strings, got 3 in it$",
        ),
        (
            lambda: BatchOptions(sessions="*", resume="no"),
            r"^BatchOptions\.resume must be True or False, got 'no'$",
        ),
    ],
)
def test_options_of_the_wrong_type_are_refused_when_built(build, message):
    """Each failed deep inside instead: `expected str ... not list` in the planner, `'<'
    not supported between instances of 'str' and 'int'`, `must be real number, not str`
    in the container limits."""
    with pytest.raises(TypeError, match=message):
        build()


def test_a_batch_given_a_list_of_sessions_runs_nothing(site, dataset, tmp_path):
    site.plugin("hello")
    with pytest.raises(TypeError, match=r"^BatchOptions\.sessions "):
        run_batch("hello", dataset=dataset, out=tmp_path / "out", sessions=["ses-01"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"echo": True}, r"^echo must be a text stream with write\(\) .*got True$"),
        ({"progress": True}, r"^progress must be a function that takes one line .*got True$"),
    ],
)
def test_an_echo_or_progress_that_cannot_take_lines_is_refused_before_the_run(
    site, dataset, tmp_path, keywords, message
):
    """`echo=True` ran the plugin and recorded the echo's `AttributeError: 'bool' object
    has no attribute 'write'` as the plugin's failure; `progress=True` raised `'bool'
    object is not callable` from inside the run."""
    site.plugin("hello")
    with pytest.raises(TypeError, match=message):
        run_plugin("hello", dataset=dataset, out=tmp_path / "out", **keywords)
    assert not (tmp_path / "out").exists()
    if "progress" in keywords:
        with pytest.raises(TypeError, match=message):
            run_batch("hello", dataset=dataset, out=tmp_path / "b", sessions="*", **keywords)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda ds, out: run_batch("hello", RunOptions(dataset=ds, out=out), "ses-*"),
            r"^run_batch: expected a BatchOptions or its fields as keywords \(sessions=..., "
            r"jobs=...\), got 'ses-\*'$",
        ),
        (
            lambda ds, out: run_plugin("hello", {"dataset": ds, "out": out}),
            r"^run_plugin: expected a RunOptions or its fields as keywords \(dataset=..., "
            r"out=...\), got \{'dataset'",
        ),
        (
            lambda ds, out: run_batch("hello", {"dataset": ds, "out": out}, sessions="*"),
            r"^run_batch: expected a RunOptions ",
        ),
        (
            lambda ds, out: run_plugin(7, dataset=ds, out=out),
            r"^run_plugin: the plugin must be a reference such as 'sync-audio' .*got 7$",
        ),
    ],
)
def test_a_value_in_place_of_the_options_or_the_plugin_is_refused(
    site, dataset, tmp_path, call, message
):
    """`run_batch(ref, options, "ses-*")`, the sessions glob where the BatchOptions go,
    failed with `'str' object has no attribute 'jobs'`; a dict of options and a plugin
    reference that is no string failed with AttributeErrors as well."""
    site.plugin("hello")
    with pytest.raises(TypeError, match=message):
        call(str(dataset), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_numpy_booleans_are_stored_as_python_booleans():
    """A flag read from a DataFrame (`np.bool_`) is a flag, stored so a record can hold it."""
    import numpy as np

    options = RunOptions(dataset="d", out="o", isolate=np.bool_(True), dry_run=np.bool_(False))
    assert options.isolate is True and options.dry_run is False


def test_a_flag_given_as_a_word_runs_nothing(site, dataset, tmp_path):
    """`isolate="no"` was taken as true and ran the plugin isolated; `dry_run="yes"` ran."""
    site.plugin("hello")
    with pytest.raises(TypeError, match=r"^RunOptions\.isolate must be True or False"):
        run_plugin("hello", dataset=dataset, out=tmp_path / "out", isolate="no")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "call",
    [
        lambda out: verify_out(out, 5),
        lambda out: verify_out(out, Path("latest")),
        lambda out: rerun(out, 5),
    ],
)
def test_a_run_id_that_is_no_string_is_named_as_the_wrong_argument(ran, tmp_path, call):
    """`verify_out(out, 5)` failed with `startswith first arg must be str or a tuple of
    str, not int`, and `rerun(out, 5)` with `'int' object has no attribute 'startswith'`."""
    with pytest.raises(TypeError, match=r"^run_id must be a run id such as .*or 'latest', got "):
        call(tmp_path / "out")


def test_resolve_given_no_string_says_what_a_reference_is(site):
    """`resolve(5)` failed with `'int' object has no attribute 'rpartition'`."""
    from mdivicomtools import resolve

    site.plugin("hello")
    with pytest.raises(TypeError, match=r"^a plugin reference must be a string such as "):
        resolve(5)  # type: ignore[arg-type]


def test_numpy_values_in_a_config_are_taken_as_python_values(site, dataset, tmp_path):
    """`config={"max_lag_s": np.float64(5.0)}` (a value read from a DataFrame) was refused
    with `the config is not JSON-safe: config.max_lag_s is a float64, not a JSON value`."""
    import numpy as np

    site.plugin(
        "echo",
        run_source="def run(dataset_dir, out_dir, config, **kw):\n    return config\n",
    )
    config = {"lag": np.float64(5.0), "steps": [np.int64(3), {"on": np.bool_(True)}]}
    record = run_plugin("echo", dataset=dataset, out=tmp_path / "out", config=config)
    assert record.status == "succeeded", record.error
    assert record.config == record.result == {"lag": 5.0, "steps": [3, {"on": True}]}
    assert type(record.config["steps"][0]) is int
    config["lag"] = np.float64(9.0)  # the caller's dict is theirs: the options kept a copy
    options = RunOptions(dataset=str(dataset), out=str(tmp_path / "o"), config=config)
    config["lag"] = 1.0
    assert options.config == {"lag": 9.0, "steps": [3, {"on": True}]}


def test_a_config_that_holds_itself_is_named_as_too_deep_not_a_recursion_error(
    site, dataset, tmp_path
):
    """Copying the config to turn numpy values into Python's descended into a dict that
    holds itself until Python's recursion limit; it stops where the JSON-safety check
    does, which names the depth."""
    site.plugin("echo")
    config: dict = {"a": 1}
    config["self"] = config
    with pytest.raises(ConfigError, match="nested deeper than"):
        run_plugin("echo", dataset=dataset, out=tmp_path / "out", config=config)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (
            {"mounts": {"models": "/srv/models"}},
            "RunOptions.mounts must be a list of NAME=PATH strings, got a dict; "
            "write mounts=['models=/srv/models']",
        ),
        (
            {"sets": {"max_lag_s": 5, "name": "x"}},
            "RunOptions.sets must be a list of KEY=VALUE strings, got a dict; "
            "write sets=['max_lag_s=5', 'name=x']",
        ),
    ],
)
def test_sets_or_mounts_given_as_a_dict_are_refused_naming_the_list(given, said):
    """`mounts={"models": "/srv/models"}` was taken as its keys, `('models',)`: the
    folder was dropped without a word and the run then refused `'models': expected
    NAME=PATH`; `sets={"max_lag_s": 5}` lost its value the same way."""
    with pytest.raises(TypeError) as raised:
        RunOptions(dataset="d", out="o", **given)
    assert str(raised.value) == said
