"""Every `mdivicom ...` command line in README.md, docs/ and the examples' READMEs is
checked against the real CLI: the command exists, each option exists, and a REF
names a plugin that the docs install. A renamed option or plugin fails here.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import click
import pytest

from clitree import command_at, subcommands
from mdivicomtools.cli import cli

ROOT = Path(__file__).parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted(ROOT.glob("examples/*/README.md")),
]
FENCE = re.compile(r"^\s*```")
#: commands whose first argument is a plugin REF
TAKES_REF = {("run",), ("plugins", "info"), ("plugins", "check")}
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z_|]*)$")


def _example_refs() -> set[str]:
    """Plugins the docs install: the examples, and what the docs scaffold."""
    refs: set[str] = set()
    for path in [*ROOT.glob("examples/*/*.json"), *ROOT.glob("examples/*/src/*/plugin.py")]:
        text = path.read_text(encoding="utf-8")
        ids = re.findall(r'"id":\s*"([^"]+)"', text)
        publishers = re.findall(r'"publisher":\s*"([^"]+)"', text) or ["local"]
        for plugin_id in ids:
            refs.update({plugin_id, f"{publishers[0]}/{plugin_id}"})
    return refs


def _commands() -> list[tuple[str, int, list[str], bool]]:
    """(file, line, tokens after `mdivicom`, shown failing) for every documented command."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        inside = False
        index = 0
        while index < len(lines):
            line = lines[index]
            if FENCE.match(line):
                inside = not inside
                index += 1
                continue
            start = index
            if inside and re.search(r"(^|[\s$])mdivicom\s", line):
                text = line
                while text.rstrip().endswith("\\") and index + 1 < len(lines):
                    index += 1
                    text = text.rstrip()[:-1] + " " + lines[index]
                following = lines[index + 1] if index + 1 < len(lines) else ""
                tokens = _tokens(text)
                if tokens is not None:
                    where = f"{path.relative_to(ROOT)}:{start + 1}"
                    found.append((where, start + 1, tokens, following.startswith("Error:")))
            index += 1
    return found


def _tokens(text: str) -> list[str] | None:
    text = text.strip().removeprefix("$ ").strip()
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
        words.pop(0)
    if not words or words[0] != "mdivicom":
        return None
    tokens = []
    for word in words[1:]:
        if word in ("|", "&&", ";", "||") or word.startswith((">", "|")):
            break
        word = word.strip("[]")
        if word and word != "...":
            tokens.append(word)
    return tokens


COMMANDS = _commands()
REFS = _example_refs()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) > 40
    assert {"sync-audio", "mdivicom/sync-audio", "hello", "checksum-dataset"} <= REFS


@pytest.mark.parametrize(
    ("where", "line", "tokens", "failing"), COMMANDS, ids=[c[0] for c in COMMANDS]
)
def test_documented_command_matches_the_cli(where, line, tokens, failing):
    command: click.Command = cli
    path: list[str] = []
    rest = list(tokens)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        children = subcommands(command)
        assert name in children, f"{where}: no command `mdivicom {' '.join([*path, name])}`"
        command = children[name]
        path.append(name)
    if isinstance(command, click.Group):
        return  # `mdivicom plugins --help` and the like
    options = {
        opt: param for param in command.params for opt in [*param.opts, *param.secondary_opts]
    }
    options.update({"--help": None, "-h": None})
    positionals: list[str] = []
    while rest:
        token = rest.pop(0)
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            assert name in options, f"{where}: `mdivicom {' '.join(path)}` has no option {name}"
            param = options[name]
            takes_value = (
                param is not None and not getattr(param, "is_flag", False) and "=" not in token
            )
            if takes_value and rest:
                rest.pop(0)
        else:
            positionals.append(token)
    if tuple(path) in TAKES_REF and positionals and not failing:
        ref = positionals[0]
        if not PLACEHOLDER.match(ref):
            created = _scaffolded()
            assert ref in REFS | created, f"{where}: {ref!r} is not a plugin the docs install"


def _scaffolded() -> set[str]:
    """Plugins the docs create with `mdivicom plugins new NAME [--publisher P]`."""
    names: set[str] = set()
    for _, _, tokens, _ in COMMANDS:
        if tokens[:2] == ["plugins", "new"] and len(tokens) > 2:
            publisher = "local"
            if "--publisher" in tokens:
                publisher = tokens[tokens.index("--publisher") + 1]
            names.update({tokens[2], f"{publisher}/{tokens[2]}"})
    return names


def test_the_checker_catches_a_renamed_option():
    with pytest.raises(AssertionError, match="has no option --datasett"):
        test_documented_command_matches_the_cli(
            "x.md:1", 1, ["run", "sync-audio", "--datasett", "d"], False
        )
    with pytest.raises(AssertionError, match="'lab/sync-audio' is not a plugin the docs install"):
        test_documented_command_matches_the_cli(
            "x.md:1", 1, ["plugins", "info", "lab/sync-audio"], False
        )
    assert json.dumps(sorted(REFS))  # the refs are plain strings


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            found.extend(_leaf_commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


def _cli_listing() -> dict[tuple[str, ...], str]:
    """docs/cli.md's listing of every command: the command's words -> its whole entry."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    block = text.split("```\n", 2)[1]
    entries: dict[tuple[str, ...], str] = {}
    current: tuple[str, ...] = ()
    for line in block.splitlines():
        if line.startswith("mdivicom "):
            current = tuple(w for w in line.split()[1:3] if re.fullmatch(r"[a-z]+", w))
            entries[current] = line
        elif current:
            entries[current] += " " + line.strip()
    return entries


LEAVES = _leaf_commands(cli)


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_the_cli_listing_names_every_command_and_option(path):
    # `batches list/show`, `--retries` and the `--slurm-*` options were missing from it
    listing = _cli_listing()
    entry = next((listing[key] for key in listing if path == key[: len(path)]), None)
    assert entry is not None, f"docs/cli.md does not list `mdivicom {' '.join(path)}`"
    command = command_at(path)
    words = set(re.findall(r"--?[a-z][a-z-]*", entry))
    for param in command.params:
        if isinstance(param, click.Option):
            assert words & set(param.opts), f"docs/cli.md: `{' '.join(path)}` lacks {param.opts}"
            if isinstance(param.type, click.Choice):
                choices = "|".join(str(c) for c in param.type.choices)
                assert choices in entry, f"docs/cli.md: `{' '.join(path)}` lacks {choices}"


def test_every_exit_code_is_documented_where_exit_codes_are_listed():
    # 74 (a record that could not be written) was missing from these, and 141
    # (the reader went away) from `mdivicom run --help`, though README listed it
    from mdivicomtools.cli.supervisor import EXIT_BROKEN_PIPE
    from mdivicomtools.model.run import EXIT_CODES, EXIT_RECORD_NOT_WRITTEN

    codes = {*EXIT_CODES.values(), 2, EXIT_RECORD_NOT_WRITTEN, EXIT_BROKEN_PIPE}
    cli_doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (readme_line,) = re.findall(r"Exit status:.*?\(\[docs", readme.replace("\n", " "))
    # one line of words: Python 3.13 strips a docstring's indentation, so a code
    # can start a line of it
    run_help = " " + " ".join((command_at(["run"]).help or "").split()) + " "
    for code in sorted(codes):
        assert f"\n| {code} |" in cli_doc, f"docs/cli.md's exit table lacks {code}"
        assert f" {code} " in readme_line, f"README.md's exit status line lacks {code}"
        assert f" {code} " in run_help, f"`mdivicom run --help` lacks exit status {code}"


def test_cli_md_names_every_user_config_key_and_config_show_setting():
    # strict_hooks, [container] and [slurm] were missing; the sample lacked rows
    from mdivicomtools.settings import UserConfig, effective_settings

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    keys = text.split("The user config file accepts", 1)[1].split("\n\n", 1)[0]
    for key in UserConfig.__struct_fields__:
        assert f"`{key}`" in keys or f"`[{key}]`" in keys, f"docs/cli.md lacks the key {key}"
    sample = text.split("$ MDIVICOM_BACKEND=podman mdivicom config show\n", 1)[1]
    rows = [line.split()[0] for line in sample.split("```", 1)[0].splitlines()[1:]]
    assert rows == [setting.name for setting in effective_settings()]


def _console_block(page: str, command: str) -> list[str]:
    """The output lines docs/<page> shows under `$ <command>` in a console block."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    after = text.split(f"$ {command}\n", 1)[1]
    return after.split("```", 1)[0].splitlines()


def test_the_dataset_check_example_is_what_the_check_prints(tmp_path, monkeypatch):
    # the page showed the error before the warning, an order the check never prints
    from click.testing import CliRunner

    study = tmp_path / "study"
    (study / "dataset_manifest.yaml").parent.mkdir()
    (study / "dataset_manifest.yaml").write_text("name: study\nversion: 1.0.0\ndescription: x\n")
    streams = {
        "ses-01": ["video/str-cam1", "video/str-cam2"],
        "ses-02": ["video/str-cam1", "audio/str-mic1", "audio/str-cam3"],
    }
    for session, names in streams.items():
        folder = study / "sessions" / session
        folder.mkdir(parents=True)
        (folder / f"{session}_session.yaml").write_text(f"id: {session}\n")
        for name in names:
            (folder / "raw" / name).mkdir(parents=True)
            if not name.endswith("str-cam3"):  # the stream the example's warning names
                stream = name.split("/")[1]
                (folder / "raw" / name / f"{stream}_stream.yaml").write_text("timebase: x\n")
    events = study / "sessions" / "ses-02" / "derived" / "annotations" / "events.tsv"
    events.parent.mkdir(parents=True)
    rows = [f"{i}\t1.0\tspeech\thi" for i in range(12)] + ["12\tlong\tspeech\thi"]
    events.write_text("\n".join(["onset\tduration\ttier\tlabel", *rows]) + "\n")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["dataset", "check", "study"])
    assert done.exit_code == 1, done.output
    assert done.output.splitlines() == _console_block("datasets.md", "mdivicom dataset check study")


def _python_block(page: Path, after: str) -> str:
    """The first ```python block of `page` after the text `after`."""
    text = page.read_text(encoding="utf-8")
    start = text.index("```python\n", text.index(after)) + len("```python\n")
    return text[start : text.index("```", start)]


WRITES_A_FILE = (
    "import pathlib\n"
    "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
    "    pathlib.Path(out_dir, 'offsets.json').write_text('{}')\n"
)


@pytest.mark.parametrize(
    ("page", "after"),
    [(ROOT / "README.md", "From Python:"), (ROOT / "docs" / "python-api.md", "# The Python API")],
    ids=["README.md", "python-api.md"],
)
def test_the_first_python_example_runs_after_the_commands_before_it(
    page, after, site, tmp_path, monkeypatch
):
    # a reader who had run `mdivicom run sync-audio --dataset study/sessions/ses-01
    # --out results` (README's list, getting started) got ValidationFailed from the
    # example: results/sync-audio/ already exists ... pass overwrite=True
    from mdivicomtools import run_plugin

    site.plugin("sync-audio", run_source=WRITES_A_FILE)
    (tmp_path / "study" / "sessions" / "ses-01").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    first = run_plugin("sync-audio", dataset="study/sessions/ses-01", out="results")
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(_python_block(page, after), str(page), "exec"), {})
    lines = shown.getvalue().splitlines()
    assert lines[0].startswith("succeeded ") and first.run_id not in lines[0]
    assert lines[1:] == ["[True]", "True"]


#: parameters the commands pass and a script has no use for
INTERNAL_PARAMETERS = {"entry_points"}  # resolve(): the entry points `run` has already read


def test_the_python_api_page_lists_every_parameter_of_each_call():
    # run_plugin's row left out `hooks`, which docs/extending.md passes, and
    # run_batch's left out `on_start` and `on_event`
    import inspect

    import mdivicomtools

    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)\((.*?)\)` \|", text, flags=re.MULTILINE)
    assert {name for name, _ in rows} >= {"run_plugin", "run_batch", "verify_out", "rerun"}
    for name, shown in rows:
        function = getattr(mdivicomtools, name)
        real = [
            ("**" if p.kind is p.VAR_KEYWORD else "") + p.name
            for p in inspect.signature(function).parameters.values()
            if p.name not in INTERNAL_PARAMETERS
        ]
        listed = [part.split("=")[0].strip() for part in shown.split(",") if part.strip()]
        assert [word for word in listed if word != "*"] == real, name


def test_the_python_api_page_says_where_each_returned_type_is_imported_from():
    # the page named the types the calls return, but not where a type hint
    # imports them from (`from mdivicomtools import BatchSummary` fails)
    import importlib
    import typing

    import mdivicomtools

    text = " ".join((ROOT / "docs" / "python-api.md").read_text(encoding="utf-8").split())
    for name in ("run_plugin", "run_batch", "verify_out", "rerun", "discover", "resolve"):
        returned = typing.get_type_hints(getattr(mdivicomtools, name))["return"]
        returned = typing.get_args(returned)[0] if typing.get_args(returned) else returned
        found = re.search(rf"`{returned.__name__}`( and `\w+`)? from `([\w.]+)`", text)
        assert found, f"python-api.md does not say where {returned.__name__} comes from"
        assert getattr(importlib.import_module(found[2]), returned.__name__) is returned


def test_getting_started_says_what_the_all_extra_installs():
    # it said "the Docker and Podman backends and Dask", but [all] brings the
    # Slurm executor and RO-Crate export too
    from mdivicomtools.common import tomlio

    project = tomlio.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    everything = set(extras["all"])
    for requirement in extras["all"]:  # `mdivicomtools[rocrate]` brings that extra's
        if requirement.startswith(f"{project['name']}["):
            everything |= set(extras[requirement.split("[")[1].rstrip("]")])
    shown = {"docker": "Docker", "podman": "Podman", "dask": "Dask", "slurm": "Slurm"}
    shown["rocrate"] = "RO-Crate"
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if "'mdivicomtools[all]'" in line]
    for extra, requirements in extras.items():
        if extra in shown and set(requirements) <= everything:
            assert shown[extra] in line, f"getting-started.md's [all] line does not name {extra}"
