"""The Python API's messages name options as its caller passes them (`overwrite=True`,
`sets`), the command's as its flags (`--overwrite`, `--set`): one message, shown in
the words of whoever called."""

from __future__ import annotations

import subprocess

import pytest

from mdivicomtools import run_plugin
from mdivicomtools.cli import main
from mdivicomtools.errors import in_callers_words
from mdivicomtools.runner import ValidationFailed
from mdivicomtools.runner.config import ConfigError
from pluginsite import MDIVICOM


def test_an_existing_output_names_the_overwrite_keyword_in_python(site, dataset, tmp_path):
    """A second run_plugin into the same out said `pass --overwrite to replace it`,
    a flag a Python caller does not have."""
    site.plugin("hello")
    run_plugin("hello", dataset=dataset, out=tmp_path / "out")
    with pytest.raises(ValidationFailed) as raised:
        run_plugin("hello", dataset=dataset, out=tmp_path / "out")
    message = str(raised.value)
    assert "pass overwrite=True to replace it once the new run succeeds" in message
    [problem] = raised.value.problems  # the list says it as the message does
    assert problem.endswith(
        "; pass overwrite=True to replace it once the new run succeeds, or choose another out"
    )
    assert "choose another out" in message and "--" not in message
    again = run_plugin("hello", dataset=dataset, out=tmp_path / "out", overwrite=True)
    assert again.status == "succeeded"


def test_a_bad_assignment_names_sets_in_python(site, dataset, tmp_path):
    site.plugin("hello")
    with pytest.raises(ConfigError) as raised:
        run_plugin("hello", dataset=dataset, out=tmp_path / "out", sets=["pattern"])
    assert str(raised.value).startswith("sets 'pattern': expected KEY=VALUE")


def test_the_command_keeps_its_flags_and_leaves_the_api_its_keywords(
    site, dataset, tmp_path, capsys
):
    """The same check, through `mdivicom run` (a process, and `main` in-process), still
    names `--overwrite`; after `main` returns, the Python API is in its own words again."""
    site.plugin("hello")
    args = ["run", "hello", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    run_plugin("hello", dataset=dataset, out=tmp_path / "out")
    shown = subprocess.run([MDIVICOM, *args], capture_output=True, text=True, env=site.env())
    assert shown.returncode == 2
    assert (
        "; pass --overwrite to replace it once the new run succeeds, or choose another --out"
        in (shown.stderr)
    )
    with pytest.raises(SystemExit) as ended:
        main(args)
    assert ended.value.code == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err
    with pytest.raises(ValidationFailed, match="pass overwrite=True to replace it"):
        run_plugin("hello", dataset=dataset, out=tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("timeout: --timeout must be positive", "timeout: timeout must be positive"),
        ("pass --dry-run or --isolate", "pass dry_run=True or isolate=True"),
        # a folder named like a flag is a path, not an option
        ("'/data/--out/x' is not a folder", "'/data/--out/x' is not a folder"),
        # a command line to type keeps its flags
        (
            "verify it with `mdivicom verify OUT --all`; or pass --out",
            "verify it with `mdivicom verify OUT --all`; or pass out",
        ),
        # a flag no Python keyword stands for is left as it is
        ("sbatch --test-only failed", "sbatch --test-only failed"),
        # a value quoted as the caller gave it is theirs, flags and all; an apostrophe
        # in a word opens no quote
        ("--set '--overwrite': expected KEY=VALUE", "sets '--overwrite': expected KEY=VALUE"),
        ('--set "it\'s --out": no', 'sets "it\'s --out": no'),
        (
            "the plugin's output exists; pass --overwrite",
            "the plugin's output exists; pass overwrite=True",
        ),
    ],
)
def test_flags_read_as_keywords_outside_the_command(text, shown):
    assert in_callers_words(text) == shown


def test_a_value_the_caller_gave_is_quoted_as_given(site, dataset, tmp_path):
    """A value holding a flag (`sets=["--overwrite"]`, a flag put where an assignment
    goes) was shown rewritten: `sets 'overwrite=True': expected KEY=VALUE`, and
    `backend="--isolate"` as `backend 'isolate=True' is not installed`, values the
    caller never passed."""
    from mdivicomtools.errors import UsageError

    site.plugin("hello")
    with pytest.raises(ConfigError) as raised:
        run_plugin("hello", dataset=dataset, out=tmp_path / "out", sets=["--overwrite"])
    assert str(raised.value).startswith("sets '--overwrite': expected KEY=VALUE")
    with pytest.raises(UsageError) as raised:
        run_plugin("hello", dataset=dataset, out=tmp_path / "out", backend="--isolate")
    assert str(raised.value).startswith("backend '--isolate' is not installed")
