"""`mdivicom runs export --ro-crate`: Process Run Crates, validated by roc-validator."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from crates import serve_context, validation_problems
from mdivicomtools import run_batch, run_plugin
from mdivicomtools.errors import UsageError
from mdivicomtools.records.crate import export_crate

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "sub").mkdir()
    pathlib.Path(out_dir, "result.csv").write_text("a,b\\n1,2\\n")
    pathlib.Path(out_dir, "sub", "notes.txt").write_text(str(config))
    return {}
"""

FLAKY = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if config.get("fail"):
        raise ValueError("asked to fail")
    pathlib.Path(out_dir, "result.csv").write_text("a,b\\n")
    return {}
"""


@pytest.fixture
def offline_context(monkeypatch):
    serve_context(monkeypatch)


@pytest.fixture(autouse=True)
def private_digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MDIVICOM_DIGEST_CACHE", str(tmp_path / "sha256.sqlite"))


def graph(crate_dir):
    data = json.loads((crate_dir / "ro-crate-metadata.json").read_text())
    return {entity["@id"]: entity for entity in data["@graph"]}


def ids(value):
    return [v["@id"] for v in (value if isinstance(value, list) else [value])]


def test_a_run_exports_as_a_valid_process_run_crate(site, dataset, tmp_path, offline_context):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin(
        "writer", dataset=dataset, out=out, sets=["level=3", "api.token=s3cret"], hash_dataset=True
    )
    crate = tmp_path / "crate"
    result = site.cli("runs", "export", str(out), record.run_id, "--ro-crate", str(crate))
    assert result.returncode == 0, result.stderr
    assert validation_problems(crate) == []

    entities = graph(crate)
    root = entities["./"]
    assert ids(root["conformsTo"]) == ["https://w3id.org/ro/wfrun/process/0.5"]
    [action_id] = ids(root["mentions"])
    action = entities[action_id]
    assert action["@type"] == "CreateAction"
    assert action["actionStatus"]["@id"] == "http://schema.org/CompletedActionStatus"
    assert action["startTime"].endswith("+00:00") and action["endTime"].endswith("+00:00")
    tool = entities[action["instrument"]["@id"]]
    assert tool["@type"] == "SoftwareApplication"
    assert (tool["name"], tool["softwareVersion"]) == ("lab/writer", "1.0.0")
    objects = [entities[i] for i in ids(action["object"])]
    [data] = [o for o in objects if o["@type"] == "Dataset"]
    assert data["identifier"] == f"sha256-content-digest:{record.dataset.digest}"
    params = {o["name"]: o["value"] for o in objects if o["@type"] == "PropertyValue"}
    assert params == {"level": 3, "api.token": "***REDACTED***"}
    results = {i: entities[i] for i in ids(action["result"])}
    assert sorted(results) == ["writer/result.csv", "writer/sub/notes.txt"]
    csv = (crate / "writer" / "result.csv").read_bytes()
    assert results["writer/result.csv"]["sha256"] == hashlib.sha256(csv).hexdigest()
    assert results["writer/result.csv"]["encodingFormat"] == "text/csv"


def test_config_keys_with_dots_get_a_property_each(site, dataset, tmp_path, offline_context):
    """`{"a.b": 1, "a": {"b": 2}}` flattened to `a.b` twice: the crate kept one value
    (2) and listed the same PropertyValue twice in the run's object."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin(
        "writer", dataset=dataset, out=out, sets=['x={"a.b": 1, "a": {"b": 2}, "c\\\\d": 3}']
    )
    crate = tmp_path / "crate"
    export_crate(out, record.run_id, crate)
    assert validation_problems(crate) == []
    entities = graph(crate)
    object_ids = ids(entities[f"#run/{record.run_id}"]["object"])
    assert len(object_ids) == len(set(object_ids))
    params = {
        entities[i]["name"]: entities[i]["value"]
        for i in object_ids
        if entities[i]["@type"] == "PropertyValue"
    }
    assert params == {"x.a\\.b": 1, "x.a.b": 2, "x.c\\\\d": 3}
    assert f"#{record.run_id}/config/x.a%5C.b" in object_ids


def test_an_output_name_that_is_not_utf8_is_exported(site, dataset, tmp_path, offline_context):
    """The record lists such a name escaped; export opened the escaped text as the
    file's name and called the output missing."""
    site.plugin(
        "oddname",
        run_source=(
            "import os\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    open(os.path.join(os.fsencode(out_dir), b'bad\\xffname'), 'wb').write(b'x')\n"
        ),
    )
    out = tmp_path / "out"
    record = run_plugin("oddname", dataset=dataset, out=out)
    assert [(o.path, o.escaped) for o in record.outputs] == [("bad\\xffname", True)]
    crate = tmp_path / "crate"
    result = site.cli("runs", "export", str(out), record.run_id, "--ro-crate", str(crate))
    assert result.returncode == 0, result.stderr
    assert (crate / "oddname" / "bad\\xffname").read_bytes() == b"x"
    assert validation_problems(crate) == []


def test_a_batch_exports_every_session_into_one_valid_crate(site, tmp_path, offline_context):
    site.plugin("writer", run_source=WRITE)
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
        (data / "sessions" / name / "x.txt").write_text(name)
    out = tmp_path / "batch"
    assert run_batch("writer", dataset=data, out=out, sessions="*", jobs=1).status == "succeeded"
    crate = tmp_path / "crate"
    export_crate(out, "latest", crate, license="https://creativecommons.org/licenses/by/4.0/")
    assert validation_problems(crate) == []
    entities = graph(crate)
    actions = [entities[i] for i in ids(entities["./"]["mentions"])]
    assert sorted(a["name"] for a in actions) == [
        "lab/writer 1.0.0 on ses-01 (session ses-01)",
        "lab/writer 1.0.0 on ses-02 (session ses-02)",
    ]
    assert (crate / "ses-02" / "writer" / "result.csv").is_file()
    assert entities["./"]["license"]["@id"] == "https://creativecommons.org/licenses/by/4.0/"


def test_a_failed_run_exports_with_a_failed_status(site, dataset, tmp_path, offline_context):
    site.plugin("bad", run_source="def run(*a, **k):\n    raise ValueError('no audio')\n")
    out = tmp_path / "out"
    record = run_plugin("bad", dataset=dataset, out=out)
    crate = tmp_path / "crate"
    export_crate(out, record.run_id, crate)
    assert validation_problems(crate) == []
    action = graph(crate)[f"#run/{record.run_id}"]
    assert action["actionStatus"]["@id"] == "http://schema.org/FailedActionStatus"
    assert action["error"] == "ValueError: no audio"


def test_export_refuses_a_non_empty_target_and_missing_outputs(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    result = site.cli("runs", "export", str(out), "--ro-crate", str(busy))
    assert result.returncode == 2 and "is not an empty folder" in result.stderr
    (out / "writer" / "result.csv").unlink()
    with pytest.raises(UsageError, match=r"output 'result\.csv' of run .* is missing"):
        export_crate(out, "latest", tmp_path / "crate")


def test_a_crate_folder_that_cannot_be_made_is_one_line_exit_2(site, dataset, tmp_path):
    """A --ro-crate through a file (or read-only) was `internal error
    (NotADirectoryError: ...)`, exit 1."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    (tmp_path / "a-file").write_text("")
    crate = tmp_path / "a-file" / "crate"
    result = site.cli("runs", "export", str(out), "--ro-crate", str(crate))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"Error: cannot write the crate into {str(crate)!r} (Not a directory: {crate}); "
        "nothing was written, choose another --ro-crate\n"
    )


@pytest.mark.parametrize("given", ["new", "empty"])
def test_a_crate_that_fails_half_way_leaves_nothing(
    site, dataset, tmp_path, offline_context, monkeypatch, given
):
    """A crate whose writing failed (a full disk) was left half written, and the
    next export into the folder was refused as not empty."""
    from rocrate.rocrate import ROCrate

    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    crate = tmp_path / "crate"
    if given == "empty":
        crate.mkdir()

    def write_until_full(self, dest):
        (Path(dest) / "writer").mkdir()
        (Path(dest) / "writer" / "result.csv").write_text("a,b")
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(ROCrate, "write", write_until_full)
    with pytest.raises(UsageError, match="No space left on device") as raised:
        export_crate(out, "latest", crate)
    assert raised.value.exit_code == 2
    # the folder given stays, empty, as it was; one the export made is gone
    assert (list(crate.iterdir()) == []) if given == "empty" else not crate.exists()


def test_a_crate_cut_short_by_ctrl_c_leaves_nothing(
    site, dataset, tmp_path, offline_context, monkeypatch
):
    """Only an OSError removed what was written: Ctrl-C (or an error inside rocrate)
    left a partial crate, which the next export into the folder refused."""
    from rocrate.rocrate import ROCrate

    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    crate = tmp_path / "crate"

    def write_until_interrupted(self, dest):
        (Path(dest) / "writer").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(ROCrate, "write", write_until_interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_crate(out, "latest", crate)
    assert not crate.exists()


def test_latest_is_the_newest_succeeded_run_as_for_verify_and_rerun(
    site, dataset, tmp_path, offline_context
):
    """`runs export latest` took the newest record whatever its status: after a failed
    run it exported that run (no outputs, FailedActionStatus), where `verify latest`
    and `rerun latest` took the run whose outputs the folder holds."""
    site.plugin("flaky", run_source=FLAKY)
    out = tmp_path / "out"
    good = run_plugin("flaky", dataset=dataset, out=out)
    failed = run_plugin("flaky", dataset=dataset, out=out, sets=["fail=true"], overwrite=True)
    assert (good.status, failed.status) == ("succeeded", "failed")
    crate = tmp_path / "crate"
    done = site.cli("runs", "export", str(out), "--ro-crate", str(crate))
    assert done.returncode == 0, done.stderr
    assert ids(graph(crate)["./"]["mentions"]) == [f"#run/{good.run_id}"]
    assert (crate / "flaky" / "result.csv").is_file()
    # a failed run is still exported when named
    export_crate(out, failed.run_id, tmp_path / "named")
    assert ids(graph(tmp_path / "named")["./"]["mentions"]) == [f"#run/{failed.run_id}"]


def test_latest_without_a_succeeded_run_names_the_latest_runs_status(site, dataset, tmp_path):
    site.plugin("flaky", run_source=FLAKY)
    out = tmp_path / "out"
    failed = run_plugin("flaky", dataset=dataset, out=out, sets=["fail=true"])
    crate = tmp_path / "crate"
    done = site.cli("runs", "export", str(out), "latest", "--ro-crate", str(crate))
    assert done.returncode == 2
    assert done.stderr == (
        f"Error: no succeeded run recorded in {str(out)!r} (its latest run {failed.run_id} "
        "failed); `latest` is the newest succeeded run, whose outputs the folder holds; name "
        "a run by its id to export one that did not succeed\n"
    )
    assert not crate.exists()


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("localhost/tool:1", ("localhost", "tool", "1")),
        ("lab/tool", ("docker.io", "lab/tool", None)),
        ("python:3.11", ("docker.io", "python", "3.11")),
        ("ghcr.io/lab/tool:2@sha256:" + "0" * 64, ("ghcr.io", "lab/tool", "2")),
        ("registry:5000/tool", ("registry:5000", "tool", None)),
    ],
)
def test_image_references_split_into_registry_name_and_tag(image, parts):
    from mdivicomtools.records.crate import _image_parts

    assert _image_parts(image) == parts


@pytest.mark.parametrize("digests", [["localhost/tool@sha256:" + "1" * 64], []])
@pytest.mark.parametrize("image_id", ["sha256:" + "3" * 64, "3" * 64])
def test_a_record_naming_its_image_by_id_is_not_split_as_a_reference(
    site, dataset, tmp_path, offline_context, image_id, digests
):
    """Older rerun records name the pinned image id as `image`; the crate called that
    registry `docker.io`, name `sha256` (or the hex id) and tag `<hex digits>`."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out)
    path = out / "_runs" / f"{record.run_id}.json"
    data = json.loads(path.read_text())
    data["container"] = {"image": image_id, "image_id": image_id, "repo_digests": digests}
    path.write_text(json.dumps(data))
    export_crate(out, record.run_id, tmp_path / "crate")
    assert validation_problems(tmp_path / "crate") == []
    [image] = [e for e in graph(tmp_path / "crate").values() if e["@type"] == "ContainerImage"]
    assert image["sha256"] == "3" * 64 and "tag" not in image
    if digests:
        assert (image["registry"], image["name"]) == ("localhost", "tool")
    else:
        assert "name" not in image and "registry" not in image


def tamper(out, path):
    """Point the first output of out's latest record at `path`, as an edit of the JSON would."""
    (record_file,) = (out / "_runs").glob("*.json")
    data = json.loads(record_file.read_text())
    data["outputs"][0]["path"] = path
    record_file.write_text(json.dumps(data))
    return data["run_id"]


@pytest.mark.parametrize("how", ["climbs", "absolute"])
def test_export_and_verify_refuse_a_record_listing_an_output_outside_its_folder(
    site, dataset, tmp_path, offline_context, how
):
    """A record is data: its output paths must not make export copy, or verify read,
    a file outside the plugin's output folder (nor write outside the crate)."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "host.txt").write_text("not the run's")
    # out/writer/../../private/host.txt is tmp_path/private/host.txt
    path = "../../private/host.txt" if how == "climbs" else str(tmp_path / "private" / "host.txt")
    run_id = tamper(out, path)
    crate = tmp_path / "exports" / "crate"
    exported = site.cli("runs", "export", str(out), run_id, "--ro-crate", str(crate))
    assert exported.returncode == 2, exported.stderr
    (line,) = exported.stderr.splitlines()
    assert line.startswith("Error: ") and repr(path) in line and "altered" in line
    assert not (tmp_path / "exports").exists()
    verified = site.cli("verify", str(out), run_id)
    assert verified.returncode == 2 and verified.stderr.splitlines() == [line]


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (os.mkfifo, "a fifo"),
        (lambda path: socket.socket(socket.AF_UNIX).bind(str(path)), "a socket"),
        (lambda path: os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3)), "a char device"),
        (os.mkdir, "a dir"),
    ],
)
def test_export_names_what_stands_in_place_of_an_output_file(site, dataset, tmp_path, make, said):
    """An output replaced by a FIFO (or a socket, a device node, a folder) was
    `missing`, though `ls` shows it there; the error says what it is and that the
    crate copies none, and nothing is written (a FIFO is never opened)."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out)
    (out / "writer" / "result.csv").unlink()
    make(out / "writer" / "result.csv")
    result = site.cli("runs", "export", str(out), "--ro-crate", str(tmp_path / "crate"))
    special = "" if said == "a dir" else "; a crate copies no special file"
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"Error: output 'result.csv' of run {record.run_id} is now {said} in "
        f"{str(out / 'writer')!r}, not the file the record lists{special}; nothing was "
        "exported (`mdivicom verify` shows what changed)"
    )
    assert not (tmp_path / "crate").exists()


def test_export_refuses_an_output_that_became_a_symlink_out_of_the_folder(
    site, dataset, tmp_path, offline_context
):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)
    (tmp_path / "host.csv").write_text("not the run's")
    (out / "writer" / "result.csv").unlink()
    (out / "writer" / "result.csv").symlink_to(tmp_path / "host.csv")
    with pytest.raises(UsageError, match=r"output 'result\.csv' of run .* is now a symlink lead"):
        export_crate(out, "latest", tmp_path / "crate")
    assert not (tmp_path / "crate").exists()


def test_symlinks_the_run_kept_are_exported_as_links(site, dataset, tmp_path, offline_context):
    """Two outputs linked to each other (a loop), a link to a folder of the output:
    the run kept and listed them, `verify` said ok, and export stopped with
    `output 'b' of run ... is missing`, since it wanted a file to copy."""
    site.plugin(
        "linker",
        run_source=(
            "import os, pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'sub').mkdir()\n"
            "    pathlib.Path(out_dir, 'sub', 'a.txt').write_text('a')\n"
            "    os.symlink('c', os.path.join(out_dir, 'b'))\n"
            "    os.symlink('b', os.path.join(out_dir, 'c'))\n"
            "    os.symlink('sub', os.path.join(out_dir, 'folder'))\n"
            "    os.symlink('sub/a.txt', os.path.join(out_dir, 'to-a'))\n"
        ),
    )
    out = tmp_path / "out"
    record = run_plugin("linker", dataset=dataset, out=out)
    assert [(o.path, o.type) for o in record.outputs] == [
        ("b", "symlink"),
        ("c", "symlink"),
        ("folder", "symlink"),
        ("sub/a.txt", "file"),
        ("to-a", "symlink"),
    ]
    crate = tmp_path / "crate"
    result = site.cli("runs", "export", str(out), record.run_id, "--ro-crate", str(crate))
    assert result.returncode == 0, result.stderr
    exported = crate / "linker"
    links = {name: os.readlink(exported / name) for name in ("folder", "to-a")}
    assert links == {"folder": "sub", "to-a": "sub/a.txt"}
    assert (exported / "to-a").read_text() == "a"
    # the loop leads to no file, so it is no payload: described, with its target
    entities = graph(crate)
    assert {"linker/folder", "linker/to-a", "linker/sub/a.txt"} <= set(entities)
    assert entities["#linker/b"]["description"] == (
        "a symbolic link to 'c', which leads to no file"
    )
    (action,) = [e for e in entities.values() if e.get("@type") == "CreateAction"]
    assert len(ids(action["result"])) == 5
    assert validation_problems(crate) == []


MAKES_SESSIONS = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for name in ("ses-01", "ses-02"):
        view = pathlib.Path(out_dir, "dataset", "sessions", name)
        view.mkdir(parents=True)
        (view / "x.txt").write_text(name)
"""


def test_a_batch_chained_into_its_producers_out_exports_both(
    site, dataset, tmp_path, offline_context
):
    """A folder with its own _runs/ was exported as a plain run root: the crate of a
    batch chained onto a plugin's output in the same --out held none of its sessions."""
    site.plugin("make", run_source=MAKES_SESSIONS)
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "results"
    assert run_plugin("make", dataset=dataset, out=out).status == "succeeded"
    summary = run_batch("writer", dataset=out / "make" / "dataset", out=out, sessions="*", jobs=1)
    assert summary.status == "succeeded"
    crate = tmp_path / "crate"
    export_crate(out, "latest", crate)
    assert validation_problems(crate) == []
    entities = graph(crate)
    actions = [entities[i] for i in ids(entities["./"]["mentions"])]
    assert sorted(a["name"] for a in actions) == [
        "lab/make 1.0.0 on dataset",
        "lab/writer 1.0.0 on ses-01 (session ses-01)",
        "lab/writer 1.0.0 on ses-02 (session ses-02)",
    ]
    assert entities["./"]["name"] == "3 runs of lab/make, lab/writer under results"
    assert (crate / "make" / "dataset" / "sessions" / "ses-02" / "x.txt").is_file()
    assert (crate / "ses-02" / "writer" / "result.csv").is_file()
    # one run of the folder itself, by its id, is still exported alone
    make_id = next(a["identifier"] for a in actions if a["name"].startswith("lab/make"))
    alone = tmp_path / "alone"
    export_crate(out, make_id, alone)
    assert [a["identifier"] for a in graph(alone).values() if a["@type"] == "CreateAction"] == [
        make_id
    ]


MAKES_A_BUNDLE = """
import pathlib
from mdivicomtools.resultbundle import write_resultbundle
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "n.txt").write_text("2\\n")
    write_resultbundle(out_dir, resultbundle_type="lab.counts.v1")
"""


def test_a_chained_runs_crate_names_the_bundle_and_the_run_it_consumed(
    site, dataset, tmp_path, offline_context
):
    """The crate named only the producer's folder, which its next run replaces."""
    site.plugin("make", run_source=MAKES_A_BUNDLE)
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "results"
    first = run_plugin("make", dataset=dataset, out=out)
    used = run_plugin("writer", dataset=out / "make", out=out)
    assert used.status == "succeeded", used.error
    crate = tmp_path / "crate"
    export_crate(out, used.run_id, crate)
    assert validation_problems(crate) == []
    entities = graph(crate)
    [action] = [e for e in entities.values() if e["@type"] == "CreateAction"]
    sidecar = out / "make" / "resultbundle.json"
    [bundle] = [entities[i] for i in ids(action["object"]) if entities[i]["@type"] == "File"]
    assert bundle["@id"] == sidecar.as_uri()
    assert bundle["sha256"] == hashlib.sha256(sidecar.read_bytes()).hexdigest()
    assert bundle["description"] == (
        f"The result bundle lab.counts.v1 written by run {first.run_id} of lab/make, read "
        "from the dataset; not copied into the crate."
    )
    assert sidecar.as_uri() in ids(entities["./"]["hasPart"])
