"""The reference pages in docs/reference/ list exactly the fields the Structs have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mdivicomtools import reference
from mdivicomtools.model.contract import ContainerSpec, parse_plugin
from mdivicomtools.model.run import EXIT_CODES, RunRecord

FOLDER = Path(__file__).parents[1] / "docs" / "reference"
FIX = "run: python -m mdivicomtools.reference docs/reference"


@pytest.mark.parametrize("page", sorted(reference.BLOCKS))
def test_generated_reference_pages_are_up_to_date(page):
    text = (FOLDER / page).read_text(encoding="utf-8")
    assert reference.update(text, reference.BLOCKS[page]) == text, f"{page} is out of date; {FIX}"


def test_every_field_and_status_has_a_meaning():
    assert reference.problems() == []


def test_a_new_field_without_a_meaning_is_reported():
    class Grown(msgspec.Struct, kw_only=True):
        run_id: str
        gpu_seconds: float = 0.0

    reference.MEANINGS[Grown] = {"run_id": "the id", "gone": "a field that was removed"}
    try:
        assert reference.problems() == [
            "Grown.gpu_seconds has no meaning",
            "Grown.gone is described but is not a field",
        ]
    finally:
        del reference.MEANINGS[Grown]


def test_tables_list_every_field_with_type_and_default():
    record = reference.field_table(RunRecord)
    for name in RunRecord.__struct_fields__:
        assert f"| `{name}` |" in record
    assert '| `schema` | string | `"mdivicomtools.run.v1"` |' in record
    assert "| `exit_code` | integer or null | required |" in record
    assert "| `warnings` | array of strings | `[]` |" in record
    container = reference.field_table(ContainerSpec)
    assert '| `pull` | one of `"always"`, `"missing"`, `"never"` | `"missing"` |' in container
    assert "| `env` | object of strings | `{}` |" in container


def test_status_table_follows_exit_codes():
    table = reference.status_table()
    for status, code in EXIT_CODES.items():
        assert f"| `{status}` | {code} |" in table


def test_update_rewrites_only_between_markers_and_refuses_unknown_or_missing_blocks():
    blocks = {"x": lambda: "NEW\n"}
    text = "before\n<!-- generated: x -->\nOLD\n<!-- end generated -->\nafter\n"
    assert reference.update(text, blocks) == (
        "before\n<!-- generated: x -->\n\nNEW\n\n<!-- end generated -->\nafter\n"
    )
    with pytest.raises(ValueError, match="missing generated block"):
        reference.update("no markers\n", blocks)
    with pytest.raises(ValueError, match="unknown generated block 'y'"):
        reference.update("<!-- generated: y -->\n<!-- end generated -->\n", blocks)


def test_the_command_rewrites_a_stale_page_and_check_reports_it(tmp_path):
    for page in reference.BLOCKS:
        (tmp_path / page).write_text((FOLDER / page).read_text(encoding="utf-8"), encoding="utf-8")
    stale = tmp_path / "run-record.md"
    stale.write_text(stale.read_text(encoding="utf-8").replace("| `schema` |", "| `schemas` |"))
    command = [sys.executable, "-m", "mdivicomtools.reference"]
    check = subprocess.run([*command, "--check", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 1 and "run-record.md is out of date" in check.stderr
    write = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True)
    assert write.returncode == 0 and write.stdout == f"wrote {stale}\n"
    assert stale.read_text(encoding="utf-8") == (FOLDER / "run-record.md").read_text(
        encoding="utf-8"
    )


def test_the_command_given_a_folder_without_the_pages_says_which_folder_it_wants(tmp_path):
    """It crashed with FileNotFoundError on a folder that does not exist (or holds other
    pages): the pages carry written text around their generated blocks, so none is made."""
    command = [sys.executable, "-m", "mdivicomtools.reference", str(tmp_path / "nope")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"reference: {tmp_path / 'nope'} has no ")
    assert "give the folder of the reference pages (docs/reference)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "nope").exists()


def _key_paths(value: object, at: str = "$") -> set[str]:
    """Every object key in a JSON value, as a path (list items share their list's path)."""
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            paths |= {f"{at}.{key}"} | _key_paths(item, f"{at}.{key}")
        return paths
    if isinstance(value, list):
        return set().union(*(_key_paths(item, f"{at}[]") for item in value))
    return set()


def test_the_example_record_is_a_whole_current_record():
    """run-record.md's example must read as a RunRecord and show every field a record
    of this release has (it had kept an older release's shape, without `runner`,
    `dataset`, `container.applied`, ...)."""
    text = (FOLDER / "run-record.md").read_text(encoding="utf-8")
    example = text.split("## An example", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    shown = msgspec.json.decode(example)
    record = msgspec.json.decode(example, type=RunRecord)
    written = msgspec.to_builtins(record)
    assert sorted(_key_paths(written) - _key_paths(shown)) == []
    assert sorted(_key_paths(shown) - _key_paths(written)) == []


def _manifest_blocks() -> list[tuple[str, str]]:
    """Every ```json block of the plugin pages that is a whole plugin (has a `meta`)."""
    docs = FOLDER.parent
    blocks = []
    for page in ("container-plugins.md", "plugin-authors.md", "reference/container-manifest.md"):
        text = (docs / page).read_text(encoding="utf-8")
        for block in text.split("```json\n")[1:]:
            body = block.split("\n```", 1)[0]
            if body.lstrip().startswith('{"meta"') or body.startswith('{\n  "meta"'):
                blocks.append((page, body))
    return blocks


def test_the_pages_have_whole_manifests():
    assert {page for page, _ in _manifest_blocks()} == {
        "container-plugins.md",
        "plugin-authors.md",
        "reference/container-manifest.md",
    }


@pytest.mark.parametrize(("page", "body"), _manifest_blocks(), ids=lambda v: str(v)[:40])
def test_a_documented_manifest_is_a_valid_plugin_without_notes(page, body):
    spec = parse_plugin(msgspec.json.decode(body))
    assert spec.notes == [], f"{page}: {spec.notes}"
