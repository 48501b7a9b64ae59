"""Registration only: listing the plugin must not import numpy."""

VERSION = "0.3.18"  # the plugin's, in its meta and in every result bundle it writes
# 16 kHz places the direct sound better in some rooms and worse in others, at 1.7x
# the CPU (docs/performance.md, "What changed in 0.3.12"): an option, not the default
DEFAULT_RATE_HZ = 8000


def get_plugin() -> dict:
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": "sync-audio",
            "kind": "python",
            "version": VERSION,
            "publisher": "mdivicom",
            "description": "Sync multi-camera audio streams of a session by cross-correlation.",
            "inputs": [
                "raw/audio/str-<id>/<files> (WAV, FLAC, MP3, M4A, ...)",
                "raw/video/str-<id>/<files> (MP4, MOV, MTS, MKV, ... with an audio track)",
                "several files in a stream folder (chapter files): each synced on its own",
            ],
            "outputs": [
                "dataset/derived/sync/timebase_maps/str-<id>_timebase_map.json",
                "dataset/derived/sync/sync_markers.tsv",
                "dataset/derived/sync/reports/sync_audio.json",
                "dataset/derived/sync/reports/sync_audio.png",
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
                    "max_lag_s": {
                        "type": ["number", "null"],
                        "exclusiveMinimum": 0,
                        "default": None,
                        "description": "limit the search to +-this many seconds "
                        "(default: the whole overlap)",
                    },
                    "analysis_rate_hz": {
                        "type": "integer",
                        "minimum": 4000,
                        # above it the decoded audio outgrows any recording's use: a
                        # 2-hour stream at 192 kHz would hold 2.7 GB
                        "maximum": 48000,
                        "default": DEFAULT_RATE_HZ,
                        "description": "the rate the audio is analysed at (4000-48000); "
                        "16000 uses the 4-8 kHz band too, at 1.7x the CPU and twice the "
                        "memory",
                    },
                    "max_error_ms": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "default": 1.0,
                        "description": "results whose error bound is larger are warnings",
                    },
                    "audio_track": {
                        "type": ["integer", "null", "object"],
                        "minimum": 0,
                        "propertyNames": {"pattern": "^str-"},
                        "additionalProperties": {"type": ["integer", "null"], "minimum": 0},
                        "default": None,
                        "description": "which audio track to read (0 = the first; default: "
                        "each file's main track): one number for every stream's file, or "
                        'per stream, e.g. {"str-cam2": 1} (--set audio_track.str-cam2=1)',
                    },
                    "continuous_chapters": {
                        "type": "boolean",
                        "default": False,
                        "description": "a stream's files are one recording cut in parts "
                        "(a camera's chapters, a recorder's size-limited files): a file "
                        "placed end to end with the one before it is then no warning for "
                        "that alone, and one whose sound says otherwise is",
                    },
                    "strict": {
                        "type": "boolean",
                        "default": False,
                        "description": "fail the run when any result is a warning",
                    },
                },
                "additionalProperties": False,
            },
        },
        "entry": {"callable": "mdivicom_sync_audio.run:run"},
    }
