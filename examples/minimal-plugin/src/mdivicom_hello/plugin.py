"""Registration only: mdivicomtools imports this module to list the plugin.

Keep it free of heavy imports (numpy, torch, ...); they belong in run.py, which
is imported only when the plugin actually runs.
"""


def get_plugin() -> dict:
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": "hello",
            "kind": "python",
            "version": "0.1.0",
            "description": "Count the files of a dataset and write a summary.",
            "publisher": "example",
            "config_schema": {
                "type": "object",
                "properties": {"pattern": {"type": "string", "default": "*"}},
                "additionalProperties": False,
            },
        },
        "entry": {"callable": "mdivicom_hello.run:run"},
    }
