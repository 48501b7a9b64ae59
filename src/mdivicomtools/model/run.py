"""The typed values of one run: request, outcome and the record written at the end.

The runner builds a RunRequest, hands it to hooks and to an execution backend,
collects a RunOutcome, and turns both into a RunRecord (docs/reference/run-record.md).
Hooks receive the request and outcome objects themselves, so they see typed
attributes (``request.plugin.id``) rather than loose dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from mdivicomtools.common.entrypoints import Distribution
from mdivicomtools.model.container import ContainerSettings
from mdivicomtools.model.contract import PluginSpec
from mdivicomtools.model.layout import RUNS_DIR

RUN_SCHEMA = "mdivicomtools.run.v1"

Status = Literal[
    "succeeded", "failed", "interrupted", "timed_out", "dry_run", "running", "abandoned"
]

#: statuses a record has while a run is in progress, or after its runner died
#: (`running` is written at start; `runs list` shows a dead runner's as `abandoned`)
UNFINISHED: frozenset[str] = frozenset({"running", "abandoned"})

#: the `mdivicom` exit status for each final run status (docs/reference/exit-codes.md)
EXIT_CODES: dict[str, int] = {
    "succeeded": 0,
    "dry_run": 0,
    "failed": 1,
    "timed_out": 124,
    "interrupted": 130,
}

#: a status as a sentence about the run says it: "run X was a dry run, so ..."
_STATUS_WORDS: dict[str, str] = {
    "interrupted": "was interrupted",
    "dry_run": "was a dry run",
    "running": "has not finished",
    "abandoned": "was abandoned (its runner died)",
}


def status_words(status: str) -> str:
    """`status` as the verb of a sentence about a run (`failed`, `timed out`, ...)."""
    return _STATUS_WORDS.get(status, status.replace("_", " "))


#: the exit status when a run ended but even its record could not be written
#: (disk full, permissions); one line on stderr says why
EXIT_RECORD_NOT_WRITTEN = 74


class PluginInfo(msgspec.Struct, kw_only=True, frozen=True):
    """Who ran: the record's `plugin` section and `request.plugin`."""

    id: str
    publisher: str
    version: str
    kind: str
    api_version: str
    source: str
    distribution: Distribution | None = None

    @property
    def ref(self) -> str:
        return f"{self.publisher}/{self.id}"


class BackendInfo(msgspec.Struct, kw_only=True):
    name: str
    engine: str | None = None


class ErrorInfo(msgspec.Struct, kw_only=True):
    type: str
    message: str


class OutputFile(msgspec.Struct, kw_only=True, frozen=True):
    """One entry of a run's output folder (folders themselves are implied by the paths).

    `type` is "file" or "symlink" (a symlink inside the output folder; its
    sha256 is that of `symlink:` and its target text, empty in older records).
    `escaped` is true when the name was not UTF-8 and `path`
    holds the escaped form that `common.safefs.display_name` documents.
    """

    path: str
    size: int
    sha256: str
    type: str = "file"
    escaped: bool = False


class HostInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The machine and software of a run (empty only if the built-in host hook failed)."""

    hostname: str = ""
    platform: str = ""
    python: str = ""
    mdivicomtools: str = ""
    # $SLURM_JOB_ID when the run ran inside a Slurm job (a --executor slurm worker);
    # omitted otherwise (omit_defaults), so records outside Slurm are as before
    slurm_job_id: str | None = None


class BundleSummary(msgspec.Struct, kw_only=True):
    """One result-bundle sidecar a run wrote, as validated after the run."""

    path: str
    type: str | None
    schema_version: str | None
    valid: bool
    problems: list[str] = []

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access (`bundle["valid"]`), as 0.1 gave plain dicts."""
        if key not in self.__struct_fields__:
            raise KeyError(key)
        return getattr(self, key)


class InputBundle(msgspec.Struct, kw_only=True):
    """One result-bundle sidecar in a run's dataset, as it was when the run started.

    A chained run's `dataset_dir` names another plugin's output folder, whose
    sidecar names the run that made it; once that plugin runs again the folder
    and its sidecar name the new run. Kept here, the run a consumer actually
    read stays traceable.
    """

    path: str
    type: str | None
    schema_version: str | None
    producer: str | None = None
    producer_run_id: str | None = None
    sha256: str | None = None


class ContainerInfo(msgspec.Struct, kw_only=True):
    """What a container backend reports: enough to pin the exact image that ran."""

    image: str
    image_id: str | None = None
    repo_digests: list[str] = []
    container_id: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    engine: str | None = None
    engine_version: str | None = None
    endpoint: str | None = None
    #: the limits, named mounts and hardening the container ran under
    applied: ContainerSettings | None = None


class DatasetInfo(msgspec.Struct, kw_only=True):
    """What the dataset was when the run started (docs/reproducibility.md).

    `fingerprint` is sha256 over each file's relative path, size and mtime_ns:
    a stat walk, enough to tell a change on the same machine. `digest` (with
    `--hash-dataset`) is sha256 over each relative path and the sha256 of the
    file's content: it proves the content anywhere. `manifest` is the per-file
    list beside the record (relative to the run root), so changes can be named.
    """

    files: int
    bytes: int
    fingerprint: str
    digest: str | None = None
    manifest: str | None = None


class RunnerInfo(msgspec.Struct, kw_only=True, frozen=True):
    """The process that runs a run, so a record left `running` by a dead runner is told apart."""

    pid: int
    hostname: str
    boot_id: str


class HookError(msgspec.Struct, kw_only=True):
    """A hook implementation that raised or returned something unusable."""

    hook: str
    plugin: str
    error: str


class RunRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Everything decided before a run starts; hooks and backends read it."""

    run_id: str
    plugin: PluginInfo
    spec: PluginSpec
    dataset_dir: Path
    run_out_dir: Path
    out_dir: Path
    work_dir: Path
    config: dict[str, Any]
    backend: str
    dry_run: bool = False
    timeout: float | None = None
    isolate: bool = False
    overwrite: bool = False
    strict_bundles: bool = False
    hash_dataset: bool = False
    rerun_of: str | None = None
    #: a container plugin's resolved resources, named mounts and hardening
    container: ContainerSettings | None = None
    attempt: int = 1
    #: the image as the manifest names it (`container.image` of the record), when
    #: `spec` runs a pinned one instead (`rerun` pins the recorded image id); None:
    #: `spec`'s own image
    image_name: str | None = None

    def plugin_env(self) -> dict[str, str]:
        """Variables a running plugin sees, so helpers such as the result-bundle
        writer can name the producer without being told.

        MDIVICOM_FINAL_OUT_DIR is where the output will be once the run has
        succeeded: the plugin writes into a staging folder that is renamed into
        place at the end (so a failed run never touches the previous output),
        and a plugin that records its own output path should record this one
        (docs/reproducibility.md says why nothing is rewritten instead).
        """
        return {
            "MDIVICOM_RUN_ID": self.run_id,
            "MDIVICOM_PLUGIN": self.plugin.ref,
            "MDIVICOM_PLUGIN_VERSION": self.plugin.version,
            "MDIVICOM_FINAL_OUT_DIR": str(self.out_dir),
        }

    @property
    def runs_dir(self) -> Path:
        return self.run_out_dir / RUNS_DIR

    @property
    def log_path(self) -> Path:
        return self.runs_dir / f"{self.run_id}.log"

    @property
    def record_path(self) -> Path:
        return self.runs_dir / f"{self.run_id}.json"


class RunOutcome(msgspec.Struct, kw_only=True):
    """What happened; finalisation hooks may add outputs and warnings, or fail it."""

    status: Status
    staging_dir: Path
    exit_code: int | None = None
    error: ErrorInfo | None = None
    result: Any = None
    outputs: list[OutputFile] = []
    resultbundles: list[BundleSummary] = []
    warnings: list[str] = []
    container: ContainerInfo | None = None
    engine: str | None = None
    #: what the backend is waiting on (a pull, say), named in an interruption's error
    activity: str | None = None

    def fail(self, error_type: str, message: str, exit_code: int | None = None) -> None:
        self.status = "failed"
        self.error = ErrorInfo(type=error_type, message=message)
        if exit_code is not None:
            self.exit_code = exit_code


class RunRecord(msgspec.Struct, kw_only=True):
    """`_runs/<run_id>.json`, schema mdivicomtools.run.v1 (docs/reference/run-record.md)."""

    schema: str = RUN_SCHEMA
    run_id: str
    status: Status
    plugin: PluginInfo
    backend: BackendInfo
    dataset_dir: str
    out_dir: str
    run_out_dir: str
    work_dir: str
    config: dict[str, Any]
    config_sha256: str
    started_at: str
    finished_at: str
    duration_s: float
    exit_code: int | None
    error: ErrorInfo | None
    outputs: list[OutputFile]
    resultbundles: list[BundleSummary]
    host: HostInfo
    extensions: dict[str, Any]
    container: ContainerInfo | None = None
    dry_run: bool = False
    result: Any = None
    log: str | None = None
    warnings: list[str] = []
    hook_errors: list[HookError] = []
    dataset: DatasetInfo | None = None
    rerun_of: str | None = None
    #: the result bundles in the dataset when the run started (which runs it consumed)
    input_bundles: list[InputBundle] = []
    # which try of a batch session this run was (`--retries`); 1 for a first try
    attempt: int = 1
    runner: RunnerInfo | None = None
    #: `--timeout` and `--isolate` as the run had them, so `rerun` repeats them
    timeout_s: float | None = None
    isolate: bool = False


class RunHeader(msgspec.Struct, kw_only=True, frozen=True):
    """What listing a record and choosing among records need of it.

    A folder's records are kept in memory as headers: whole records hold every
    output file (thousands of entries in a run of a plugin that writes tables),
    and a run root of a few thousand such runs held gigabytes in `runs list`.
    The one record a command then works on is read whole again, from `path`
    (`records.store.full_record`).
    """

    run_id: str
    status: Status
    plugin: PluginInfo
    started_at: str
    duration_s: float
    exit_code: int | None
    error: ErrorInfo | None
    runner: RunnerInfo | None = None
    #: the record file it was read from
    path: str

    @classmethod
    def of(cls, record: RunRecord, path: Path) -> RunHeader:
        return cls(
            path=str(path),
            run_id=record.run_id,
            status=record.status,
            plugin=record.plugin,
            started_at=record.started_at,
            duration_s=record.duration_s,
            exit_code=record.exit_code,
            error=record.error,
            runner=record.runner,
        )
