"""The command under locales that are not UTF-8: the C locale with PYTHONUTF8=0
(ASCII file names and argv), a Latin-1 stdout. Records stay the same UTF-8 text
as in a UTF-8 locale, and nothing ends in `internal error`.

Each test runs `mdivicom` in a subprocess: the filesystem encoding is fixed when
the interpreter starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from containerkit import container_plugin
from pluginsite import MDIVICOM, PluginSite

#: the C locale as a researcher's old terminal gives it, without Python's coercion
#: to UTF-8: file names, argv and stdout are ASCII (with surrogate escapes)
ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
UTF8_LOCALE = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONUTF8": "1"}

#: a plugin writing an output whose name is UTF-8 on disk, and a result bundle naming it
UTF8_OUTPUT_RUN = """
import os
import subprocess
import sys
from mdivicomtools.resultbundle import write_resultbundle

def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if not dry_run:
        name = os.path.join(os.fsencode(out_dir), "Ergebnis-\u00fc-\u65e5\u672c.tsv".encode())
        with open(name, "wb") as f:
            f.write(b"onset\\n1\\n")
        write_resultbundle(out_dir, resultbundle_type="lab.loc.v1")
    return {"label": config.get("label")}
"""


def _dataset(tmp_path: Path) -> Path:
    """A session folder whose name is UTF-8 on disk: `ses-ü日本`."""
    folder = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), "ses-ü日本".encode())))
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"x")
    return folder


def _run(site: PluginSite, tmp_path: Path, out: str, env: dict[str, str]) -> dict:
    done = site.cli("run", "loc", "--dataset", str(_dataset_path(tmp_path)), "--out", out, **env)
    assert done.returncode == 0, done.stderr
    records = sorted(Path(out, "_runs").glob("*.json"))
    return json.loads(records[-1].read_bytes().decode("utf-8"))


def _dataset_path(tmp_path: Path) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), "ses-ü日本".encode())))


def test_a_run_under_the_ascii_c_locale_records_what_a_utf8_locale_records(site, tmp_path):
    """write_resultbundle looked for `Ergebnis-ü...` by its text, which an ASCII
    filesystem encoding cannot name: the run failed `required file ... does not
    exist`, though the plugin had written it."""
    site.plugin("loc", run_source=UTF8_OUTPUT_RUN)
    _dataset(tmp_path)
    in_c = _run(site, tmp_path, str(tmp_path / "out-c"), ASCII_LOCALE)
    in_utf8 = _run(site, tmp_path, str(tmp_path / "out-u"), UTF8_LOCALE)
    assert in_c["status"] == in_utf8["status"] == "succeeded"
    assert in_c["dataset_dir"] == in_utf8["dataset_dir"] == str(tmp_path) + "/ses-ü日本"
    # the sidecar holds its run's id and time: all but its sha256 is the same
    stamped = {"resultbundle.json"}
    assert [{**o, "sha256": None} if o["path"] in stamped else o for o in in_c["outputs"]] == [
        {**o, "sha256": None} if o["path"] in stamped else o for o in in_utf8["outputs"]
    ]
    assert "Ergebnis-ü-日本.tsv" in [o["path"] for o in in_c["outputs"]]
    assert in_c["resultbundles"] == in_utf8["resultbundles"]
    assert in_c["resultbundles"][0]["valid"] is True


def test_verify_bundles_validate_and_rerun_under_the_ascii_c_locale(site, tmp_path):
    """A record written in a UTF-8 locale names `ses-ü日本` in UTF-8: under the C
    locale verify said `the dataset folder is gone`, rerun refused the same, and
    `bundles validate` called the sidecar INVALID."""
    site.plugin("loc", run_source=UTF8_OUTPUT_RUN)
    _dataset(tmp_path)
    out = str(tmp_path / "out")
    _run(site, tmp_path, out, UTF8_LOCALE)

    verified = site.cli("verify", out, **ASCII_LOCALE)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "dataset: matches the record's fingerprint" in verified.stdout

    validated = site.cli("bundles", "validate", out + "/loc", **ASCII_LOCALE)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.startswith("valid")

    rerun = site.cli("rerun", out, "latest", "--out", str(tmp_path / "again"), **ASCII_LOCALE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "dataset:    same as the original" in rerun.stdout


def test_record_text_mixing_characters_and_a_name_from_the_disk_under_ascii(tmp_path):
    """A plugin's error holding a word with `ü` and a file name that is not UTF-8
    (surrogate escapes) could not be written under an ASCII filesystem encoding:
    escaping it encoded the whole text in that encoding first."""
    code = (
        "import os, sys\n"
        "from mdivicomtools.common.jsonio import encode\n"
        "text = 'Fehler \\u00fc: ' + os.fsdecode(b'caf\\xe9.tsv')\n"
        "sys.stdout.buffer.write(encode({'message': text}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env={**os.environ, **ASCII_LOCALE},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"message": "Fehler ü: caf\\xe9.tsv"}


ECHO_RUN = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"label": config.get("label")}
"""


def _set_label(site: PluginSite, tmp_path: Path, out: str, value: str, env: dict[str, str]):
    dataset = tmp_path / "ds"
    dataset.mkdir(exist_ok=True)
    return site.cli(
        "run", "echo", "--dataset", str(dataset), "--out", out, "--set", f"label={value}", **env
    )


def test_set_with_non_ascii_under_the_ascii_c_locale_is_the_text_typed(site, tmp_path):
    """`--set label=Grüße` under the C locale with PYTHONUTF8=0 reached the config as
    surrogate escapes: `internal error (UnicodeEncodeError ...)` hashing it."""
    site.plugin("echo", run_source=ECHO_RUN)
    records = []
    for name, env in (("c", ASCII_LOCALE), ("u", UTF8_LOCALE)):
        out = tmp_path / f"out-{name}"
        done = _set_label(site, tmp_path, str(out), "Grüße-日本", env)
        assert done.returncode == 0, done.stderr
        records.append(json.loads(next((out / "_runs").glob("*.json")).read_bytes()))
    in_c, in_utf8 = records
    assert in_c["config"] == in_utf8["config"] == {"label": "Grüße-日本"}
    assert in_c["config_sha256"] == in_utf8["config_sha256"]
    assert in_c["result"] == {"label": "Grüße-日本"}


def test_set_and_config_bytes_that_are_not_utf8_are_a_usage_error(site, tmp_path):
    """A Latin-1 terminal's `ü` (byte 0xfc) in a UTF-8 locale was `internal error`."""
    site.plugin("echo", run_source=ECHO_RUN)
    latin1 = os.fsdecode(b"Gr\xfc")  # as argv gives the byte: a surrogate escape
    done = _set_label(site, tmp_path, str(tmp_path / "out"), latin1, UTF8_LOCALE)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "Error: --set 'label=Gr\\xfc' is not UTF-8 text (byte 0xfc); set the terminal to "
        "UTF-8, or write the value into a UTF-8 --config file\n"
    )
    inline = site.cli(
        "run", "echo", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "out"),
        "--config", '{"label": "' + latin1 + '"}', **UTF8_LOCALE,
    )  # fmt: skip
    assert inline.returncode == 2, inline.stderr
    assert 'Error: --config \'{"label": "Gr\\xfc"}\' is not UTF-8 text' in inline.stderr
    assert not (tmp_path / "out" / "_runs").exists()


def test_a_config_string_holding_surrogate_escapes_is_refused_by_name():
    """run_plugin(config={"name": <an os.listdir name that is not UTF-8>}) stopped
    with UnicodeEncodeError hashing the config."""
    from mdivicomtools.runner.config import ConfigError, build_config

    with pytest.raises(ConfigError) as caught:
        build_config({"files": ["ok", os.fsdecode(b"caf\xe9.tsv")]})
    assert str(caught.value) == (
        "the config is not JSON-safe: config.files[1] is not UTF-8 text: 'caf\\xe9.tsv'"
    )


def _cli_bytes(site: PluginSite, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MDIVICOM, *args], capture_output=True, env=site.env(**env), timeout=120, check=False
    )


LATIN1_STDOUT = {**UTF8_LOCALE, "PYTHONIOENCODING": "latin-1"}


def test_a_latin1_stdout_shows_what_it_cannot_encode_escaped(site, tmp_path):
    """Under a Latin-1 locale `plugins list` with one description holding an en dash
    was `internal error (UnicodeEncodeError: 'latin-1' codec ...)`, exit 1; so was
    --json, whose document must be UTF-8 whatever the locale."""
    site.plugin("echo", run_source=ECHO_RUN, description="Zählt \u2013 日本 🎉")
    listed = _cli_bytes(site, "plugins", "list", **LATIN1_STDOUT)
    assert listed.returncode == 0, listed.stderr
    assert "Z\xe4hlt \\u2013 \\u65e5\\u672c \\U0001f389".encode("latin-1") in listed.stdout

    as_json = _cli_bytes(site, "plugins", "list", "--json", **LATIN1_STDOUT)
    assert as_json.returncode == 0, as_json.stderr
    items = json.loads(as_json.stdout.decode("utf-8"))
    (item,) = [item for item in items if item["id"] == "echo"]
    assert item["meta"]["description"] == "Zählt \u2013 日本 🎉"


def test_a_latin1_stdout_keeps_a_tables_columns_in_line(site, tmp_path):
    """The batch table measured `ses-日本` as 8 columns and printed it as
    `ses-\\u65e5\\u672c`: its row's STATUS stood 8 columns right of the others'."""
    site.plugin("echo", run_source=ECHO_RUN)
    sessions = tmp_path / "ds" / "sessions"
    for name in ("ses-01", "ses-日本"):
        (sessions / name).mkdir(parents=True)
    out = str(tmp_path / "out")
    ran = site.cli(
        "run", "echo", "--dataset", str(tmp_path / "ds"), "--out", out, "--sessions", "ses-*"
    )
    assert ran.returncode == 0, ran.stderr
    shown = _cli_bytes(site, "batches", "show", out, "latest", **LATIN1_STDOUT)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode("latin-1").splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("SESSION"))) :][:3]
    assert table[2].startswith("ses-\\u65e5\\u672c  ")
    assert len({line.index("succeeded" if i else "STATUS") for i, line in enumerate(table)}) == 1


def test_verify_finds_a_batch_session_whose_name_is_not_utf8(site, tmp_path):
    """The record names `ses-\\xff02` in its escaped form, without a flag: verify
    read it as written and said `dataset: DIFFERS: the dataset folder is gone`,
    and its header printed the name's byte raw (a surrogate, `ses-\ufffd02`)."""
    site.plugin("echo", run_source=ECHO_RUN)
    sessions = os.path.join(os.fsencode(tmp_path), b"ds", b"sessions")
    for name in (b"ses-01", b"ses-\xff02"):
        os.makedirs(os.path.join(sessions, name))
    out = str(tmp_path / "out")
    ran = site.cli(
        "run", "echo", "--dataset", str(tmp_path / "ds"), "--out", out, "--sessions", "ses-*"
    )
    assert ran.returncode == 0, ran.stderr
    verified = _cli_bytes(site, "verify", out, "--all", **UTF8_LOCALE)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = verified.stdout.decode("utf-8")
    assert "ses-\\xff02: lab/echo run " in shown
    assert shown.count(": ok\n") == 2
    assert shown.count("dataset: matches the record's fingerprint") == 2


#: lists the mounted dataset, and says where the host's output will be
LISTING = (
    "ls {dataset_dir} > {out_dir}/listing.txt && echo $MDIVICOM_FINAL_OUT_DIR > {out_dir}/final"
)


@pytest.mark.engines
def test_a_container_mounts_a_utf8_dataset_under_the_ascii_c_locale(site, tmp_path, engine):
    """The mount source went to the engine as surrogate escapes, which the API's
    JSON made replacement characters: `bind source path does not exist:
    .../ses-\ufffd\ufffd...` (docker) or `statfs ...: no such file` (podman)."""
    container_plugin(site, "listing", LISTING)
    dataset = _dataset(tmp_path)
    out = tmp_path / "out-ü"  # the staging folder and MDIVICOM_FINAL_OUT_DIR too
    done = site.cli(
        "run", "listing", "--dataset", str(dataset), "--out", str(out), "--backend", engine,
        **ASCII_LOCALE,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "listing" / "listing.txt").read_bytes() == b"a.txt\n"
    assert (out / "listing" / "final").read_bytes() == os.fsencode(out / "listing") + b"\n"


@pytest.mark.engines
def test_a_dataset_name_that_is_not_utf8_fails_saying_why(site, tmp_path, engine):
    """An engine cannot be given `ses-\\xff02`: the run failed with the engine's
    own message naming a mangled folder that `does not exist`."""
    container_plugin(site, "listing", LISTING)
    dataset = os.path.join(os.fsencode(tmp_path), b"ses-\xff02")
    os.mkdir(dataset)
    out = tmp_path / "out"
    done = site.cli(
        "run", "listing", "--dataset", os.fsdecode(dataset), "--out", str(out),
        "--backend", engine, **UTF8_LOCALE,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (record,) = (out / "_runs").glob("*.json")
    error = json.loads(record.read_bytes())["error"]
    assert error["type"] == "UnmountablePath"
    assert error["message"].endswith(
        f"cannot mount '{tmp_path}/ses-\\xff02' into the container: its name is not UTF-8, "
        "and Docker and Podman take paths as UTF-8 text; rename it, or link it under a "
        "UTF-8 name and give that"
    )


def test_a_slurm_message_holding_a_byte_that_is_not_utf8_is_shown_not_raised():
    """sbatch refusing an account named in Latin-1 (or any non-ASCII under the C
    locale with PYTHONUTF8=0): decoding its message raised UnicodeDecodeError,
    `internal error` in place of `Slurm refuses the worker job (...)`."""
    from mdivicomtools.batch import slurm

    said = slurm._slurm(["sh", "-c", "printf 'sbatch: error: account Gr\\374\\n' >&2; exit 1"])
    assert (said.returncode, said.stderr) == (1, "sbatch: error: account Gr\\xfc\n")


PRINTING_RUN = """
import os

def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    print("Grüße aus", os.path.basename(dataset_dir))
    return {"name": os.path.basename(dataset_dir)}
"""


def test_isolate_runs_a_dataset_whose_name_is_not_utf8(site, tmp_path):
    """The job went to the child as JSON text, which cannot hold the surrogate
    escapes of `ses-\\xff02`: `UnicodeEncodeError: the python backend ... failed`,
    where the same run without --isolate succeeded. The log holds the name's
    bytes as printed, in both lanes (in-process it held `ses-?02`)."""
    site.plugin("printing", run_source=PRINTING_RUN)
    dataset = os.path.join(os.fsencode(tmp_path), b"ses-\xff02")
    os.mkdir(dataset)
    for isolate in ((), ("--isolate",)):
        out = tmp_path / f"out{len(isolate)}"
        done = site.cli(
            "run", "printing", *isolate, "--dataset", os.fsdecode(dataset), "--out", str(out),
            **UTF8_LOCALE,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        (record,) = (out / "_runs").glob("*.json")
        assert json.loads(record.read_bytes())["result"] == {"name": "ses-\\xff02"}
        (log,) = (out / "_runs").glob("*.log")
        assert "Grüße aus ses-".encode() + b"\xff02\n" in log.read_bytes()


def test_isolate_under_the_ascii_c_locale_prints_as_an_in_process_run(site, tmp_path):
    """An isolated plugin's stdout was ASCII and strict under the C locale with
    PYTHONUTF8=0: `print("Grüße")` failed the run, which succeeded in-process;
    and a `ses-ü` dataset did not reach the child at all (surrogates in JSON)."""
    site.plugin("printing", run_source=PRINTING_RUN)
    dataset = _dataset(tmp_path)
    for isolate in ((), ("--isolate",)):
        out = tmp_path / f"out{len(isolate)}"
        done = site.cli(
            "run", "printing", *isolate, "--dataset", str(dataset), "--out", str(out),
            **ASCII_LOCALE,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        (log,) = (out / "_runs").glob("*.log")
        assert "Grüße aus ses-ü日本\n" in log.read_bytes().decode("utf-8")
        (record,) = (out / "_runs").glob("*.json")
        assert json.loads(record.read_bytes())["result"] == {"name": "ses-ü日本"}


def test_runs_export_under_the_ascii_c_locale_names_a_utf8_dataset(site, tmp_path):
    """`runs export --ro-crate` of a run on `ses-ü日本` under the C locale with
    PYTHONUTF8=0 was `internal error (UnicodeEncodeError: 'ascii' codec ...)`:
    the dataset's URI was made from the record's text in this locale."""
    site.plugin("echo", run_source=ECHO_RUN)
    dataset = _dataset(tmp_path)
    out = tmp_path / "out"
    ran = site.cli("run", "echo", "--dataset", str(dataset), "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    ids = []
    for name, env in (("c", ASCII_LOCALE), ("u", UTF8_LOCALE)):
        crate = tmp_path / f"crate-{name}"
        done = site.cli("runs", "export", str(out), "--ro-crate", str(crate), **env)
        assert done.returncode == 0, done.stderr
        graph = json.loads((crate / "ro-crate-metadata.json").read_bytes())["@graph"]
        ids.append(sorted(e["@id"] for e in graph if e["@id"].startswith("file://")))
    assert ids[0] == ids[1] == [(dataset.as_uri() + "/")]
    assert "ses-%C3%BC%E6%97%A5%E6%9C%AC/" in ids[0][0]


#: outputs whose names are UTF-8 on disk, written whatever this process's locale
NAMED_OUTPUTS_RUN = """
import os
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for name in ("gr\u00fc\u00dfe.txt", "\u65e5\u672c.csv"):
        with open(os.path.join(os.fsencode(out_dir), name.encode()), "wb") as f:
            f.write(name.encode())
    return {}
"""


def test_runs_export_under_the_ascii_c_locale_copies_outputs_with_utf8_names(site, tmp_path):
    """`runs export --ro-crate` under the C locale with PYTHONUTF8=0 of a run whose
    outputs are `grüße.txt` and `日本.csv`, or of a batch with a session `ses-ü日本`
    (or `ses-\\xff02`, which no locale can name), was `internal error
    (UnicodeEncodeError ...)` from inside rocrate, and left a partial crate: it now
    writes the crate a UTF-8 locale writes, the same ids and the same files."""
    site.plugin("named", run_source=NAMED_OUTPUTS_RUN)
    (tmp_path / "ds").mkdir()
    single = tmp_path / "single"
    ran = site.cli("run", "named", "--dataset", str(tmp_path / "ds"), "--out", str(single))
    assert ran.returncode == 0, ran.stderr
    sessions = os.path.join(os.fsencode(tmp_path), b"study", b"sessions")
    for name in (b"ses-01", "ses-ü日本".encode(), b"ses-\xff02"):
        os.makedirs(os.path.join(sessions, name))
    batch = tmp_path / "batch"
    ran = site.cli(
        "run", "named", "--dataset", str(tmp_path / "study"), "--out", str(batch),
        "--sessions", "ses-*",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    for out in (single, batch):
        crates = []
        for name, env in (("c", ASCII_LOCALE), ("u", UTF8_LOCALE)):
            crate = tmp_path / f"crate-{out.name}-{name}"
            done = site.cli("runs", "export", str(out), "--ro-crate", str(crate), **env)
            assert done.returncode == 0, done.stderr
            data = json.loads((crate / "ro-crate-metadata.json").read_bytes())
            files = {
                os.path.relpath(os.path.join(top, entry), os.fsencode(crate))
                for top, _, entries in os.walk(os.fsencode(crate))
                for entry in entries
            }
            crates.append((sorted(e["@id"] for e in data["@graph"] if e["@type"] == "File"), files))
        assert crates[0] == crates[1]
        ids, files = crates[0]
        for name in ("grüße.txt", "日本.csv"):
            assert any(i.endswith(quote(name)) for i in ids), ids
            assert any(f.endswith(name.encode()) for f in files), files
    assert f"ses-{quote('ü日本')}/named/{quote('日本.csv')}" in ids
    assert "ses-\\xff02/named/grüße.txt".encode() in files


def test_a_batch_table_under_the_ascii_c_locale_names_sessions_as_a_utf8_locale(site, tmp_path):
    """Under the C locale with PYTHONUTF8=0 the table showed `ses-ü日本` as
    `ses-\\xc3\\xbc\\xe6\\x97\\xa5\\xe6\\x9c\\xac`, its bytes, where a UTF-8 locale
    shows the name; a name that is not UTF-8 still shows its byte (`ses-\\xff02`)."""
    site.plugin("echo", run_source=ECHO_RUN)
    sessions = os.path.join(os.fsencode(tmp_path), b"ds", b"sessions")
    for name in (b"ses-01", "ses-ü日本".encode(), b"ses-\xff02"):
        os.makedirs(os.path.join(sessions, name))
    tables = []
    for name, env in (("c", ASCII_LOCALE), ("u", UTF8_LOCALE)):
        out = str(tmp_path / f"out-{name}")
        ran = _cli_bytes(
            site, "run", "echo", "--dataset", str(tmp_path / "ds"), "--out", out,
            "--sessions", "ses-*", **env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.decode("utf-8").splitlines()
        tables.append([line.split("  ")[0] for line in lines[:4]])
    assert tables[0] == tables[1] == ["SESSION", "ses-01", "ses-ü日本", "ses-\\xff02"]
