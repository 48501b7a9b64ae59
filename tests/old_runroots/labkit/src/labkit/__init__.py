"""Three plugins a lab might have run for a year: one that writes a result bundle,
one that fails, one slow enough to be interrupted or killed."""


def _plugin(plugin_id: str, description: str) -> dict:
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": plugin_id,
            "kind": "python",
            "version": "1.0.0",
            "publisher": "lab",
            "description": description,
        },
        "entry": {"callable": f"labkit.run:{plugin_id}"},
    }


def copy() -> dict:
    return _plugin("copy", "Upper-case every .txt file; a result bundle describes them.")


def failer() -> dict:
    return _plugin("failer", "Fail after writing a partial output.")


def slow() -> dict:
    return _plugin("slow", "Sleep for config seconds.")
