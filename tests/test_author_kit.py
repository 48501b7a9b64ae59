"""What a plugin author packaging a tool with the kit hit: the messages of a slip
in a manifest or registration, and what `plugins check` says about it."""

from __future__ import annotations

import json

import pytest

from mdivicomtools.model.contract import InvalidPlugin, parse_plugin
from pluginsite import plugin_dict


def _container(**fields: object) -> dict:
    plugin = plugin_dict("wav-stats", kind="container")
    plugin["container"].update(fields)
    return plugin


def test_a_misspelt_resources_field_names_the_field_meant_and_the_known_ones():
    # was `container.resources.memroy is not a known field`, where a misspelt
    # container field already got its "did you mean" and the known fields
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(_container(resources={"memroy": "256m"}))
    assert str(caught.value) == (
        "container.resources.memroy is not a known field; did you mean "
        "container.resources.memory?; known fields of container.resources: "
        "memory, cpus, shm_size, pids, gpus"
    )


def test_a_misspelt_mount_field_names_the_field_meant():
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(_container(mounts={"models": {"targt": "/models"}}))
    assert str(caught.value) == (
        "container.mounts[...].targt is not a known field; did you mean "
        "container.mounts[...].target?; known fields of container.mounts[...]: "
        "target, required, description"
    )


def test_a_misspelt_pull_policy_names_the_choices():
    # was `container.pull: invalid enum value 'nevr'`: neither the choices nor the near one
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(_container(pull="nevr"))
    assert str(caught.value) == (
        "container.pull: 'nevr' is not one of 'always', 'missing', 'never'; did you mean 'never'?"
    )


def test_a_misspelt_kind_names_the_choices():
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(plugin_dict("audio-rms", kind="pyhton"))
    assert str(caught.value) == (
        "meta.kind: 'pyhton' is not one of 'container', 'python'; did you mean 'python'?"
    )


def test_a_wrong_gpus_word_does_not_claim_all_is_the_only_choice():
    # gpus takes "all", a count or device ids: "is not one of 'all'" would mislead
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(_container(resources={"gpus": "al"}))
    assert str(caught.value) == "container.resources.gpus: invalid enum value 'al'"


def test_a_misspelt_required_meta_field_points_at_the_misspelling():
    plugin = plugin_dict("audio-rms")
    plugin["meta"]["apiversion"] = plugin["meta"].pop("api_version")
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(plugin)
    assert str(caught.value) == (
        "meta.api_version is missing (required); meta has 'apiversion': did you mean 'api_version'?"
    )


def test_a_misspelt_optional_meta_field_gets_a_note():
    # `config_shema` was kept as free-form data without a word, so the plugin took
    # any config unchecked
    spec = parse_plugin(plugin_dict("audio-rms", config_shema={"type": "object"}, author="me"))
    assert spec.meta.config_schema is None
    assert spec.notes == [
        "meta.config_shema is no field of the contract, so it is kept as free-form data and "
        "means nothing to mdivicomtools; did you mean meta.config_schema?",
        "meta.author is no field of the contract, so it is kept as free-form data and "
        "means nothing to mdivicomtools; did you mean meta.authors?",
    ]


def test_free_form_meta_fields_far_from_the_contract_get_no_note():
    spec = parse_plugin(plugin_dict("audio-rms", maintainer="me", input_bundles=["x"]))
    assert spec.notes == []


def test_plugins_info_and_check_show_the_meta_note(site):
    site.plugin("rms-level", config_shema={"type": "object"})
    info = site.cli("plugins", "info", "rms-level")
    assert "did you mean meta.config_schema?" in info.stdout
    check = site.cli("plugins", "check", "rms-level", "--json")
    notes = [c for c in json.loads(check.stdout) if c["name"] == "note"]
    assert [n["status"] for n in notes] == ["warn"]
    assert "meta.config_shema is no field of the contract" in notes[0]["detail"]
