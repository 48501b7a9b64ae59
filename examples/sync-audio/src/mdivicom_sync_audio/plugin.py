"""Registration only: listing the plugin must not import numpy."""


def get_plugin() -> dict:
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": "sync-audio",
            "kind": "python",
            "version": "0.1.0",
            "publisher": "mdivicom",
            "description": "Sync multi-camera audio streams of a session by cross-correlation.",
            "inputs": ["raw/audio/str-<id>/*.wav"],
            "outputs": [
                "dataset/derived/sync/timebase_maps/str-<id>_timebase_map.json",
                "dataset/derived/sync/sync_markers.tsv",
                "dataset/derived/sync/reports/sync_audio.json",
                "dataset/resultbundle.json",
            ],
            "license": "MIT",
            "config_schema": {
                "type": "object",
                "properties": {
                    "reference_stream": {
                        "type": ["string", "null"],
                        "description": "stream id to align to, e.g. str-cam1 "
                        "(default: the first stream by name)",
                    },
                    "max_lag_s": {"type": "number", "exclusiveMinimum": 0, "default": 10},
                    "analysis_rate_hz": {"type": "integer", "minimum": 1000, "default": 8000},
                    "min_confidence": {"type": "number", "minimum": 0, "default": 6},
                },
                "additionalProperties": False,
            },
        },
        "entry": {"callable": "mdivicom_sync_audio.run:run"},
    }
