"""Result bundles in real runs: the finalise hook, strict mode, and chaining plugins."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest

from mdivicomtools.runner import run_plugin

WRITES_BUNDLE = """
import pathlib
from mdivicomtools.resultbundle import FileTime, write_resultbundle

def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    view = pathlib.Path(out_dir, "dataset", "sessions", "ses-01", "derived", "annotations")
    view.mkdir(parents=True)
    (view / "events.tsv").write_text("onset\\tduration\\ttier\\tlabel\\n0.5\\t1.0\\tspeech\\thi\\n")
    write_resultbundle(
        pathlib.Path(out_dir, "dataset"), resultbundle_type="lab.annotations.v1",
        roles={"sessions/ses-01/derived/annotations/events.tsv": "events"},
        times={"sessions/ses-01/derived/annotations/events.tsv":
               FileTime(kind="interval", start_key="onset", end_key="duration")})
"""

WRITES_BROKEN_BUNDLE = """
import json, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "resultbundle.json").write_text(json.dumps({
        "resultbundle_type": "lab.broken.v1", "schema_version": "1.0.0",
        "time_reference": {"kind": "session", "unit": "s"},
        "files": [{"path": "missing.tsv", "role": "data", "format": "tsv", "required": True}]}))
"""

READS_BUNDLE = """
import json, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    bundle = json.loads(pathlib.Path(dataset_dir, "resultbundle.json").read_text())
    (events,) = [f for f in bundle["files"] if f["role"] == "events"]
    rows = pathlib.Path(dataset_dir, events["path"]).read_text().splitlines()[1:]
    total = sum(float(r.split("\\t")[1]) for r in rows)
    pathlib.Path(out_dir, "summary.json").write_text(json.dumps(
        {"from": bundle["producer"]["tool_ref"], "events": len(rows), "seconds": total}))
"""


def test_a_valid_bundle_is_listed_with_its_producer(site, dataset, tmp_path):
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    out = tmp_path / "out"
    record = run_plugin("annotate", dataset=dataset, out=out)
    assert record.status == "succeeded"
    assert msgspec.to_builtins(record.resultbundles) == [
        {
            "path": "dataset/resultbundle.json",
            "type": "lab.annotations.v1",
            "schema_version": "1.0.0",
            "valid": True,
            "problems": [],
        }
    ]
    sidecar = json.loads((out / "annotate" / "dataset" / "resultbundle.json").read_text())
    assert sidecar["producer"] == {
        "tool_ref": "lab/annotate",
        "tool_version": "1.0.0",
        "pipeline_run_id": record.run_id,
    }


@pytest.mark.parametrize("isolate", [False, True])
def test_an_invalid_bundle_is_a_warning_by_default(site, dataset, tmp_path, isolate):
    site.plugin("sloppy", run_source=WRITES_BROKEN_BUNDLE)
    out = tmp_path / "out"
    record = run_plugin("sloppy", dataset=dataset, out=out, isolate=isolate)
    assert record.status == "succeeded"
    (bundle,) = record.resultbundles
    assert bundle["valid"] is False and bundle["type"] == "lab.broken.v1"
    assert bundle["problems"] == [
        "resultbundle.json: /files/0/path: required file 'missing.tsv' does not exist under "
        f"'{out / 'sloppy'}' (expected the file to exist)"  # where it is, not its staging
    ]
    assert record.warnings == [
        "result bundle resultbundle.json is invalid (1 problem(s)); see the record's "
        "resultbundles or `mdivicom bundles validate`"
    ]
    assert (out / "sloppy" / "resultbundle.json").exists()


def test_strict_bundles_fail_the_run_before_promotion(site, dataset, tmp_path, monkeypatch):
    site.plugin("sloppy", run_source=WRITES_BROKEN_BUNDLE)
    record = run_plugin("sloppy", dataset=dataset, out=tmp_path / "a", strict_bundles=True)
    assert record.status == "failed" and record.error.type == "InvalidResultBundle"
    assert not (tmp_path / "a" / "sloppy").exists()
    config = tmp_path / "user.toml"
    config.write_text("strict_bundles = true\n")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    assert run_plugin("sloppy", dataset=dataset, out=tmp_path / "b").status == "failed"
    assert (
        run_plugin("sloppy", dataset=dataset, out=tmp_path / "c", strict_bundles=False).status
        == "succeeded"
    )


def test_cli_says_clearly_that_a_bundle_is_invalid(site, dataset, tmp_path):
    site.plugin("sloppy", run_source=WRITES_BROKEN_BUNDLE)
    result = site.cli("run", "sloppy", "--dataset", str(dataset), "--out", str(tmp_path / "o"))
    assert result.returncode == 0
    assert "resultbundle.json (lab.broken.v1): INVALID" in result.stdout
    assert "required file 'missing.tsv' does not exist" in result.stdout
    strict = site.cli(
        "run", "sloppy", "--dataset", str(dataset), "--out", str(tmp_path / "s"), "--strict-bundles"
    )
    assert strict.returncode == 1
    assert "InvalidResultBundle: invalid result bundle(s) with --strict-bundles" in strict.stdout


def test_cli_shows_ten_problems_of_a_bundle_and_counts_the_rest(site, dataset, tmp_path):
    """A sidecar listing 500 missing files printed 500 problem lines in the summary."""
    site.plugin(
        "many",
        run_source="import json, pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    files = [{'path': f'f{i}.tsv', 'role': 'data', 'format': 'tsv', 'required': True}\n"
        "             for i in range(500)]\n"
        "    pathlib.Path(out_dir, 'resultbundle.json').write_text(json.dumps({\n"
        "        'resultbundle_type': 'lab.many.v1', 'schema_version': '1.0.0',\n"
        "        'time_reference': {'kind': 'none', 'unit': 'none'}, 'files': files}))\n",
    )
    out = tmp_path / "o"
    result = site.cli("run", "many", "--dataset", str(dataset), "--out", str(out))
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 11
    assert "required file 'f9.tsv' does not exist" in problems[9]
    assert problems[10].split(None, 1)[1] == (
        "490 more problem(s) not shown; the record's resultbundles and "
        "`mdivicom bundles validate` list every one"
    )
    record = json.loads(next((out / "_runs").glob("*.json")).read_text())
    assert len(record["resultbundles"][0]["problems"]) == 500


def test_cli_names_no_type_for_an_unreadable_bundle(site, dataset, tmp_path):
    # an unreadable sidecar has no type: the summary said `resultbundle.json (None)`
    site.plugin(
        "garbled",
        run_source="import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path(out_dir, 'resultbundle.json').write_text('{not json')\n",
    )
    result = site.cli("run", "garbled", "--dataset", str(dataset), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("bundle:")]
    assert line.split(None, 1)[1] == "resultbundle.json: INVALID"
    assert "None" not in result.stdout


def test_chaining_two_plugins_through_a_result_bundle(site, dataset, tmp_path):
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("summarise", run_source=READS_BUNDLE)
    out = tmp_path / "out"
    first = run_plugin("annotate", dataset=dataset, out=out)
    second = run_plugin("summarise", dataset=out / "annotate" / "dataset", out=out)
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert json.loads((out / "summarise" / "summary.json").read_text()) == {
        "from": "lab/annotate",
        "events": 1,
        "seconds": 1.0,
    }
    assert second.dataset_dir == str(out / "annotate" / "dataset")


def test_the_consumers_record_keeps_naming_the_producer_run_it_read(site, dataset, tmp_path):
    """Its dataset folder, and the sidecar there, name the producer's latest run: after
    the producer ran again, tracing the chain through them named the wrong run."""
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("summarise", run_source=READS_BUNDLE)
    out = tmp_path / "out"
    first = run_plugin("annotate", dataset=dataset, out=out)
    view = out / "annotate" / "dataset"
    read = run_plugin("summarise", dataset=view, out=out)
    assert read.status == "succeeded", read.error
    sidecar = (view / "resultbundle.json").read_bytes()
    assert msgspec.to_builtins(read.input_bundles) == [
        {
            "path": "resultbundle.json",
            "type": "lab.annotations.v1",
            "schema_version": "1.0.0",
            "producer": "lab/annotate",
            "producer_run_id": first.run_id,
            "sha256": hashlib.sha256(sidecar).hexdigest(),
        }
    ]
    again = run_plugin("annotate", dataset=dataset, out=out, overwrite=True)
    assert again.status == "succeeded" and again.run_id != first.run_id
    stored = json.loads((out / "_runs" / f"{read.run_id}.json").read_text())
    assert stored["input_bundles"][0]["producer_run_id"] == first.run_id
    # a run on a dataset without sidecars consumed none
    assert run_plugin("annotate", dataset=dataset, out=tmp_path / "o2").input_bundles == []
    # the CLI's summary says which run's output it read
    result = site.cli("run", "summarise", "--dataset", str(view), "--out", str(tmp_path / "o3"))
    assert result.returncode == 0, result.stderr
    assert (
        f"input:      resultbundle.json (lab.annotations.v1) by lab/annotate in run {again.run_id}"
        in result.stdout.splitlines()
    )


def test_verify_names_the_producer_run_read_and_the_one_there_now(site, dataset, tmp_path):
    """It said only `dataset changed: resultbundle.json`: not which result was consumed."""
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("summarise", run_source=READS_BUNDLE)
    out = tmp_path / "out"
    first = run_plugin("annotate", dataset=dataset, out=out)
    read = run_plugin("summarise", dataset=out / "annotate" / "dataset", out=out)
    ok = site.cli("verify", str(out), read.run_id)
    assert ok.returncode == 0 and "input bundle" not in ok.stdout, ok.stdout
    again = run_plugin("annotate", dataset=dataset, out=out, overwrite=True)
    result = site.cli("verify", str(out), read.run_id)
    assert result.returncode == 1, result.stdout
    assert (
        f"  input bundle: resultbundle.json: this run read it as written by run {first.run_id} "
        f"of lab/annotate; it now names run {again.run_id}"
    ) in result.stdout.splitlines()
    [report] = json.loads(site.cli("verify", str(out), read.run_id, "--json").stdout)
    assert len(report["dataset"]["bundles"]) == 1


def test_verify_reads_an_input_sidecar_only_where_the_run_read_it(site, dataset, tmp_path):
    """The run reads a sidecar that is a symlink only inside its dataset; `verify` read
    it wherever the link led once the dataset made it one: a host file was hashed and
    its `pipeline_run_id` shown (and a regular file that blocks its reader, such as
    `/proc/kmsg` once empty, could keep verify waiting). Now such a sidecar is not
    read, and verify says so."""
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("summarise", run_source=READS_BUNDLE)
    out = tmp_path / "out"
    first = run_plugin("annotate", dataset=dataset, out=out)
    view = out / "annotate" / "dataset"
    read = run_plugin("summarise", dataset=view, out=out)
    assert read.status == "succeeded", read.error
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"producer": {"pipeline_run_id": "host-secret"}}))
    (view / "resultbundle.json").unlink()
    (view / "resultbundle.json").symlink_to(host)
    result = site.cli("verify", str(out), read.run_id)
    assert result.returncode == 1, result.stdout
    assert (
        f"  input bundle: resultbundle.json: this run read it as written by run {first.run_id} "
        f"of lab/annotate; it cannot be read now ({view / 'resultbundle.json'} leads out of "
        f"{view}; it was not read)"
    ) in result.stdout.splitlines()
    assert "host-secret" not in result.stdout


def test_a_batch_over_a_views_sessions_names_the_views_bundle(site, dataset, tmp_path):
    """Each session folder holds no sidecar: the bundle it came from is the view's."""
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("each")  # returns {"ok": True}
    out = tmp_path / "out"
    first = run_plugin("annotate", dataset=dataset, out=out)
    view = out / "annotate" / "dataset"
    result = site.cli(
        "run", "each", "--dataset", str(view), "--sessions", "ses-*", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    [path] = (out / "ses-01" / "_runs").glob("*.json")
    [used] = json.loads(path.read_text())["input_bundles"]
    assert (used["path"], used["type"], used["producer_run_id"]) == (
        "../../resultbundle.json",
        "lab.annotations.v1",
        first.run_id,
    )
    # nothing above a dataset that is no other plugin's output is read
    (dataset.parent / "resultbundle.json").write_text("{}")
    assert run_plugin("each", dataset=dataset, out=tmp_path / "o2").input_bundles == []


def test_an_unreadable_input_sidecar_is_listed_by_its_path(tmp_path):
    """Listed, with what is known; a link out of the dataset is not followed."""
    from mdivicomtools.bundles.inputs import input_bundles

    dataset = tmp_path / "d"
    (dataset / "a").mkdir(parents=True)
    (dataset / "a" / "resultbundle.json").write_text("{not json")
    (tmp_path / "host.json").write_text('{"resultbundle_type": "host.secret.v1"}')
    (dataset / "resultbundle.json").symlink_to(tmp_path / "host.json")
    found = input_bundles(dataset, ["a/resultbundle.json", "other.json", "resultbundle.json"])
    assert [(b.path, b.type, b.producer_run_id) for b in found] == [
        ("a/resultbundle.json", None, None),
        ("resultbundle.json", None, None),
    ]
    assert found[0].sha256 == hashlib.sha256(b"{not json").hexdigest()
    assert found[1].sha256 is None


def test_finding_input_sidecars_builds_no_path_per_dataset_file(tmp_path, monkeypatch):
    """A run hands input_bundles every file of its dataset: a path object built for each
    (PurePosixPath(rel).name) cost most of a second on 100,000 files per run."""
    from pathlib import PurePosixPath

    from mdivicomtools.bundles import inputs
    from mdivicomtools.bundles.inputs import input_bundles

    built: list[tuple] = []

    class Counting(PurePosixPath):
        def __new__(cls, *args):
            built.append(args)
            return super().__new__(cls, *args)

    class CountingPath(type(tmp_path)):
        def __new__(cls, *args):
            built.append(args)
            return super().__new__(cls, *args)

    monkeypatch.setattr(inputs, "PurePosixPath", Counting, raising=False)
    monkeypatch.setattr(inputs, "Path", CountingPath)
    dataset = tmp_path / "d"
    (dataset / "ses-01").mkdir(parents=True)
    (dataset / "ses-01" / "resultbundle.json").write_text("{}")
    names = [f"ses-01/raw/f{n:05d}.wav" for n in range(1000)]
    names += ["ses-01/resultbundle.json", "not-resultbundle.json", "resultbundle.json.bak"]
    found = input_bundles(dataset, names)
    assert [bundle.path for bundle in found] == ["ses-01/resultbundle.json"]
    assert len(built) <= 2, built[:5]


READS_WHILE_REPLACED = """
import pathlib, subprocess
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    before = pathlib.Path(dataset_dir, "resultbundle.json").read_text()
    if config.get("cmd"):  # the producer runs again meanwhile, in a process of its own
        subprocess.run(config["cmd"], env=config["env"], check=True, capture_output=True)
    else:  # the plugin itself writes into its dataset
        pathlib.Path(dataset_dir, "resultbundle.json").write_text(before + " ")
"""


def test_a_dataset_replaced_by_the_producers_next_run_is_not_blamed_on_the_plugin(
    site, dataset, tmp_path
):
    """The consumer failed with 'the plugin modified the dataset', which it had not."""
    from pluginsite import MDIVICOM

    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("summarise", run_source=READS_WHILE_REPLACED)
    out = tmp_path / "out"
    assert run_plugin("annotate", dataset=dataset, out=out).status == "succeeded"
    view = out / "annotate" / "dataset"
    again = [MDIVICOM, "run", "annotate", "--dataset", str(dataset), "--out", str(out)]
    config = {"cmd": [*again, "--overwrite"], "env": site.env()}
    record = run_plugin("summarise", dataset=view, out=out, config=config)
    assert record.status == "failed" and record.error.type == "DatasetModified"
    assert record.error.message.startswith(
        f"another run of 'annotate' replaced its output '{out / 'annotate'}', which holds this "
        f"run's dataset, while the plugin ran (the newest record in '{out / '_runs'}' names "
        "that run): changed "
    ), record.error.message
    assert record.error.message.endswith("; run again on the new output")
    # a plugin that writes into the same chained dataset itself is still named as the cause
    record = run_plugin("summarise", dataset=view, out=out, overwrite=True)
    assert record.error.message == (
        "the plugin modified the dataset, which is read-only: changed resultbundle.json"
    )


WRITES_DETACHED = """
import json, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    # docs/resultbundles.md: a detached sidecar in the output, pointing at read-only inputs
    folder = pathlib.Path(out_dir, "resultbundles", "up")
    folder.mkdir(parents=True)
    (folder / "resultbundle.json").write_text(json.dumps({
        "resultbundle_type": "lab.upstream.v1", "schema_version": "1.0.0",
        "time_reference": {"kind": "none", "unit": "none"},
        "source": {"root": str(pathlib.Path(dataset_dir).absolute())},
        "files": [{"path": config.get("path", "sessions/ses-01/b.txt"), "role": "data",
                   "format": "txt", "required": True}]}))
"""


def detached_layout(tmp_path, dataset, path="sessions/ses-01/b.txt"):
    """The sidecar WRITES_DETACHED writes, as a staging folder holds it (no run)."""
    staging = tmp_path / "staging"
    folder = staging / "resultbundles" / "up"
    folder.mkdir(parents=True)
    sidecar = folder / "resultbundle.json"
    sidecar.write_text(json.dumps({
        "resultbundle_type": "lab.upstream.v1", "schema_version": "1.0.0",
        "time_reference": {"kind": "none", "unit": "none"},
        "source": {"root": str(dataset)},
        "files": [{"path": path, "role": "data", "format": "txt", "required": True}]}))  # fmt: skip
    return staging, sidecar


def run_request(dataset, tmp_path, mounts=()):
    from mdivicomtools.model.container import AppliedMount, ContainerSettings
    from mdivicomtools.model.contract import PluginMeta, PluginSpec
    from mdivicomtools.model.run import PluginInfo, RunRequest

    meta = PluginMeta(
        api_version="mdivicomtools.plugin.v0.1", id="up", kind="python", version="1", description=""
    )
    return RunRequest(
        run_id="r",
        plugin=PluginInfo(
            id="up", publisher="lab", version="1", kind="python", api_version="v", source="x"
        ),
        spec=PluginSpec(meta=meta),
        dataset_dir=dataset,
        run_out_dir=tmp_path / "out",
        out_dir=tmp_path / "out" / "up",
        work_dir=tmp_path / "work",
        config={},
        backend="python",
        container=ContainerSettings(
            mounts=[
                AppliedMount(name=f"m{i}", source=str(m), target="/m") for i, m in enumerate(mounts)
            ]
        ),
    )


def test_the_run_may_read_a_detached_payload_in_its_dataset_as_validate_does(dataset, tmp_path):
    """The recommended detached sidecar was INVALID in the run ('lies outside the output
    folder') and valid for `bundles validate`; what the plugin could read is read."""
    from mdivicomtools.bundles.resultbundle import Readable, validate_file

    staging, sidecar = detached_layout(tmp_path, dataset)
    assert validate_file(sidecar).valid
    # the finalisation's check today (docs/resultbundles.md, rule 4): the output folder only
    [problem] = validate_file(sidecar, confine=staging).problems
    assert problem.message == (
        "'sessions/ses-01/b.txt' lies outside the output folder; it was not read"
    )
    in_run = Readable.of_run(run_request(dataset, tmp_path), staging)
    assert validate_file(sidecar, confine=in_run).valid
    # what the plugin could not read stays unread: a host file, a dataset link out of it
    (tmp_path / "host.txt").write_text("secret header\n")
    (dataset / "out.txt").symlink_to(tmp_path / "host.txt")
    for folder, root, path in (("host", tmp_path, "host.txt"), ("link", dataset, "out.txt")):
        _, elsewhere = detached_layout(tmp_path / folder, root, path)
        assert validate_file(elsewhere).valid  # `bundles validate` reads what you point at
        report = validate_file(elsewhere, confine=in_run)
        assert [p.message for p in report.problems] == [
            f"{path!r} lies outside the run's output folder, dataset and named mounts; "
            "it was not read"
        ], report.problems
    # a named mount is readable too
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.txt").write_text("weights\n")
    _, mounted = detached_layout(tmp_path / "mounted", models, "m.txt")
    assert not validate_file(mounted, confine=in_run).valid
    with_mount = Readable.of_run(run_request(dataset, tmp_path, [models]), staging)
    assert validate_file(mounted, confine=with_mount).valid


def test_a_detached_sidecar_has_the_same_verdict_in_the_run_and_in_validate(
    site, dataset, tmp_path
):
    site.plugin("up", run_source=WRITES_DETACHED)
    out = tmp_path / "out"
    record = run_plugin("up", dataset=dataset, out=out)
    assert record.status == "succeeded", record.error
    validated = site.cli("bundles", "validate", str(out / "up"))
    assert validated.returncode == 0, validated.stdout
    [bundle] = record.resultbundles
    assert bundle.valid, bundle.problems


POINTS_BACK = """
import json, os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "own").mkdir()
    pathlib.Path(out_dir, "own", "n.tsv").write_text("n\\tlabel\\n1\\tx\\n")
    root = config["root"].replace("$FINAL", os.environ["MDIVICOM_FINAL_OUT_DIR"])
    files = [{"path": config["path"], "role": "data", "format": "tsv", "required": True,
              "key_columns": {"label": "label"}}]
    pathlib.Path(out_dir, "resultbundle.json").write_text(json.dumps({
        "resultbundle_type": "lab.pointer.v1", "schema_version": "1.0.0",
        "time_reference": {"kind": "none", "unit": "none"},
        "source": {"root": root}, "files": files}))
"""


@pytest.mark.parametrize(
    ("root", "path"),
    [
        ("../annotate/dataset", "sessions/ses-01/derived/annotations/events.tsv"),
        ("$FINAL/own", "n.tsv"),
        ("own", "n.tsv"),
    ],
    ids=["the-upstream-output-by-a-relative-root", "its-own-output-by-its-final-path", "own"],
)
def test_a_detached_root_is_resolved_from_where_the_sidecar_will_live(
    site, dataset, tmp_path, root, path
):
    """The run checked a sidecar from its staging folder: a relative `source.root` to
    the upstream plugin's output in the same --out, or an absolute one under
    $MDIVICOM_FINAL_OUT_DIR (as docs/reproducibility.md advises), named no file there
    and the run said INVALID where `bundles validate` said valid."""
    site.plugin("annotate", run_source=WRITES_BUNDLE)
    site.plugin("pointer", run_source=POINTS_BACK)
    out = tmp_path / "out"
    assert run_plugin("annotate", dataset=dataset, out=out).status == "succeeded"
    config = {"root": root, "path": path}
    record = run_plugin("pointer", dataset=out / "annotate" / "dataset", out=out, config=config)
    assert record.status == "succeeded", record.error
    [bundle] = record.resultbundles
    assert bundle.valid, bundle.problems
    validated = site.cli("bundles", "validate", str(out / "pointer"))
    assert validated.returncode == 0, validated.stdout
    # a missing file is named under the folder it will be in, not the staging folder
    missing = run_plugin(
        "pointer", dataset=dataset, out=tmp_path / "other", config={**config, "path": "no.tsv"}
    )
    [bundle] = missing.resultbundles
    assert not bundle.valid
    if root != "../annotate/dataset":
        assert bundle.problems == [
            "resultbundle.json: /files/0/path: required file 'no.tsv' does not exist under "
            f"{str(tmp_path / 'other' / 'pointer' / 'own')!r} (expected the file to exist)"
        ]


LINKS_A_TABLE = """
import json, os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "tables").mkdir()
    pathlib.Path(out_dir, "tables", "v1.tsv").write_text("onset\\tlabel\\n1\\tx\\n")
    os.symlink(config["target"], pathlib.Path(out_dir, "events.tsv"))
    pathlib.Path(out_dir, "resultbundle.json").write_text(json.dumps({
        "resultbundle_type": "lab.linked.v1", "schema_version": "1.0.0",
        "time_reference": {"kind": "none", "unit": "none"},
        "files": [{"path": "events.tsv", "role": "events", "format": "tsv", "required": True,
                   "key_columns": {"label": "label"}}]}))
"""


def test_a_table_that_is_a_symlink_inside_the_output_is_read_at_its_target(site, dataset, tmp_path):
    """A table linked to another file of the same output (as a datalad or git-annex
    payload is) made the bundle INVALID: `... is a symlink; it was not read`, naming
    the staging path. A link out of what the plugin could read stays unread."""
    site.plugin("linked", run_source=LINKS_A_TABLE)
    out = tmp_path / "out"
    record = run_plugin("linked", dataset=dataset, out=out, config={"target": "tables/v1.tsv"})
    assert record.status == "succeeded", record.error
    [bundle] = record.resultbundles
    assert bundle.valid, bundle.problems
    validated = site.cli("bundles", "validate", str(out / "linked"))
    assert validated.returncode == 0, validated.stdout
    host = tmp_path / "host.tsv"
    host.write_text("onset\tlabel\n")
    record = run_plugin(
        "linked", dataset=dataset, out=tmp_path / "other", config={"target": str(host)}
    )
    # a link leaving the output is refused by the inventory, as before
    assert record.status == "failed" and record.error.type == "UnsafeOutput"
