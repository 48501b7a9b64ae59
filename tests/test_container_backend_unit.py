"""ContainerBackend logic against a fake engine: the paths real engines rarely take."""

from __future__ import annotations

import io
import struct
import threading

import pytest

from mdivicomtools import hookimpl
from mdivicomtools.execution.container.engine import EngineUnreachable, GpuSupport, ImageFacts
from mdivicomtools.execution.container.logstream import (
    MAX_PARTIAL,
    STDERR,
    STDOUT,
    Frame,
    LineJoiner,
    read_frames,
)
from mdivicomtools.execution.container.plan import ContainerPlan, expand
from mdivicomtools.execution.container.runtime import (
    LOG_RESENT_MARKER,
    ContainerBackend,
    _LogFollower,
    _said_no_more_processes,
)
from mdivicomtools.execution.runlog import RunLog
from mdivicomtools.hooks.manager import load_hooks
from mdivicomtools.runner import run_plugin
from pluginsite import plugin_dict


class FakeEngine:
    name = "fake"
    endpoint = "unix:///fake.sock"

    def __init__(self, *, drop_read_only=False, exit_code=0, oom=False, gpus=False):
        self.gpus = gpus
        self.drop_read_only = drop_read_only
        self.exit_code = exit_code
        self.oom = oom
        self.calls: list[str] = []
        self.plan: ContainerPlan | None = None

    def version(self):
        return "1.0"

    def image(self, ref):
        return ImageFacts(id="sha256:abc", repo_digests=[])

    def pull(self, ref):
        self.calls.append("pull")

    def create(self, plan):
        self.plan = plan
        self.calls.append("create")
        return "c" * 64

    def mounts(self, container_id):
        assert self.plan is not None
        return {
            m.target: (True if self.drop_read_only else not m.read_only) for m in self.plan.mounts
        }

    def start(self, container_id):
        self.calls.append("start")

    def logs(self, container_id):
        yield STDOUT, b"fake output\n"

    def all_logs(self, container_id):
        return [(STDOUT, b"fake output\n")]

    def wait(self, container_id):
        return self.exit_code

    def state(self, container_id):
        return self.exit_code, self.oom

    def stop(self, container_id, grace_s):
        self.calls.append("stop")

    def remove(self, container_id):
        self.calls.append("remove")

    def labelled(self, label):
        return []

    def close(self):
        self.calls.append("close")

    def gpu_support(self):
        return GpuSupport(available=self.gpus, detail="fake GPUs" if self.gpus else "no fake GPUs")


def run_with(site, dataset, tmp_path, engine, **container):
    manifest = plugin_dict("tool", kind="container")
    manifest["container"].update(container)
    site.manifest("tool.json", manifest)

    class Module:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [ContainerBackend("fake", lambda: engine, fix="n/a")]

    hooks = load_hooks(extra=[("fake-backend", Module())])
    return run_plugin("tool", dataset=dataset, out=tmp_path / "out", backend="fake", hooks=hooks)


def test_a_lost_read_only_flag_refuses_to_start_the_container(site, dataset, tmp_path):
    engine = FakeEngine(drop_read_only=True)
    record = run_with(site, dataset, tmp_path, engine)
    assert record.status == "failed" and record.error.type == "MountCheckFailed"
    assert "/mdivicom/dataset" in record.error.message
    assert "/mdivicom/config.json" in record.error.message
    assert "start" not in engine.calls
    assert engine.calls[-2:] == ["remove", "close"]


def test_oom_kill_is_recorded(site, dataset, tmp_path):
    record = run_with(site, dataset, tmp_path, FakeEngine(exit_code=137, oom=True))
    assert record.status == "failed" and record.error.type == "OutOfMemory"
    assert record.container.oom_killed is True and record.exit_code == 137


def test_oom_message_names_the_limit(site, dataset, tmp_path):
    engine = FakeEngine(exit_code=137, oom=True)
    record = run_with(site, dataset, tmp_path, engine, resources={"memory": "1.5g"})
    assert record.error.message == "out of memory (limit 1.5 GiB)"
    assert engine.plan.settings.memory == 3 * 1024**3 // 2


def test_gpus_reach_the_plan_when_the_engine_serves_them(site, dataset, tmp_path):
    engine = FakeEngine(gpus=True)
    record = run_with(site, dataset, tmp_path, engine, resources={"gpus": 2})
    assert record.status == "succeeded"
    assert engine.plan.settings.gpus == 2 and record.container.applied.gpus == 2


def test_gpus_are_refused_when_the_engine_cannot_serve_them(site, dataset, tmp_path):
    from mdivicomtools.runner import ValidationFailed

    engine = FakeEngine(gpus=False)
    with pytest.raises(ValidationFailed, match="cannot serve GPU requests: no fake GPUs"):
        run_with(site, dataset, tmp_path, engine, resources={"gpus": "all"})
    assert "create" not in engine.calls


def test_success_through_a_third_party_engine(site, dataset, tmp_path):
    engine = FakeEngine()
    record = run_with(site, dataset, tmp_path, engine)
    assert record.status == "succeeded"
    assert engine.calls == ["create", "start", "remove", "close"]
    assert "fake output" in (tmp_path / "out" / record.log).read_text()
    assert record.backend.engine == "fake 1.0"


def test_unreachable_engine_is_reported_with_the_fix(site, dataset, tmp_path):
    def connect():
        raise EngineUnreachable("nothing at unix:///fake.sock")

    backend = ContainerBackend("fake", connect, fix="start the fake engine")
    status = backend.availability()
    assert (status.available, status.reason, status.fix) == (
        False,
        "nothing at unix:///fake.sock",
        "start the fake engine",
    )


@pytest.mark.parametrize(
    ("argv", "expanded"),
    [
        (
            ["sh", "-c", "cp {dataset_dir}/a {out_dir}/b"],
            ["sh", "-c", "cp /mdivicom/dataset/a /mdivicom/out/b"],
        ),
        (
            ["tool", "--config={config_path}", "--tmp", "{work_dir}"],
            ["tool", "--config=/mdivicom/config.json", "--tmp", "/mdivicom/work"],
        ),
        (["awk", "{print $1}", "{unknown}"], ["awk", "{print $1}", "{unknown}"]),
    ],
)
def test_placeholders_expand_and_other_braces_stay(argv, expanded):
    assert expand(argv) == expanded
    assert expand(None) is None


class _Streams:
    """An engine whose live stream and stored log can disagree, as Podman's do under load."""

    def __init__(self, live: list[Frame], stored: list[Frame]) -> None:
        self.live, self.stored = live, stored
        self.drained = threading.Event()  # the follower has taken every live frame

    def logs(self, container_id):
        yield from self.live
        self.drained.set()

    def all_logs(self, container_id):
        return self.stored


def _out(*chunks: bytes) -> list[Frame]:
    return [(STDOUT, chunk) for chunk in chunks]


@pytest.mark.parametrize(
    ("live", "stored", "expected"),
    [
        (_out(b"a\n", b"b\n"), _out(b"a\nb\n"), b"a\nb\n"),  # the stream had it all
        # it ended early: the tail is appended
        (_out(b"a\n", b"b"), _out(b"a\nb\nc\n"), b"a\nb\nc\n"),
        (
            _out(b"a\n", b"c\n"),  # it skipped a line: the stored log is written whole
            _out(b"a\nb\nc\n"),
            b"a\nc\n\n" + LOG_RESENT_MARKER.encode() + b"\na\nb\nc\n",
        ),
        (
            # Podman cut a stdout line where its read stopped and the stderr line came
            # next: each line stays whole, in the order it ended
            [*_out(b"line-1\nline-"), (STDERR, b"last\n"), *_out(b"2\n")],
            [*_out(b"line-1\nline-"), (STDERR, b"last\n"), *_out(b"2\n")],
            b"line-1\nlast\nline-2\n",
        ),
    ],
)
def test_the_log_ends_complete_whatever_the_live_stream_lost(tmp_path, live, stored, expected):
    path = tmp_path / "run.log"
    streams = _Streams(live, stored)
    with RunLog(path) as log:
        follower = _LogFollower(streams, "c1", log)  # type: ignore[arg-type]
        follower.start()
        # finish() cuts the live stream at once: let it deliver what it has first
        assert streams.drained.wait(10)
        follower.finish()
    assert path.read_bytes() == expected


class _LargeStoredLog:
    """An engine that stored `frames` lines of 1 MiB each (a tool that printed a lot),
    handed out one frame at a time as the engines' answer streams them."""

    @staticmethod
    def line(index: int) -> bytes:
        return b"%08d" % index + b"x" * (1024 * 1024 - 9) + b"\n"

    def __init__(self, frames: int, live: int, *, lost: bool = False) -> None:
        self.frames, self.live, self.lost = frames, live, lost
        self.drained = threading.Event()

    def logs(self, container_id):
        for index in range(self.live):
            if not (self.lost and index == 1):  # the stream skipped a frame
                yield STDOUT, self.line(index)
        self.drained.set()

    def all_logs(self, container_id):
        for index in range(self.frames):
            yield STDOUT, self.line(index)


@pytest.mark.parametrize("lost", [False, True], ids=["tail-appended", "resent"])
def test_completing_the_log_holds_no_more_than_a_frame_of_it(tmp_path, lost):
    """The stored log was read whole into memory, joined and sliced: a tool that
    printed 1 GB took the runner to 3.3 GB. It is now compared and copied as a stream."""
    import tracemalloc

    path = tmp_path / "run.log"
    engine = _LargeStoredLog(frames=48, live=4, lost=lost)
    with RunLog(path) as log:
        follower = _LogFollower(engine, "c1", log)  # type: ignore[arg-type]
        follower.start()
        assert engine.drained.wait(10)
        tracemalloc.start()
        try:
            follower.finish()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"finish() held {peak / 2**20:.0f} MiB"
    line = len(_LargeStoredLog.line(0))
    if lost:  # what the stream gave, the marker, then the stored log whole
        marker = b"\n" + LOG_RESENT_MARKER.encode() + b"\n"
        assert path.stat().st_size == 3 * line + len(marker) + 48 * line
    else:
        assert path.stat().st_size == 48 * line
    with path.open("rb") as written:
        written.seek(-line, 2)
        assert written.read() == _LargeStoredLog.line(47)


def test_unfinished_lines_are_written_at_the_end_one_per_stream():
    joiner = LineJoiner()
    assert joiner.feed(STDOUT, b"50%") == b""
    assert joiner.feed(STDERR, b"warn") == b""
    assert joiner.feed(STDOUT, b" 100%") == b""
    assert joiner.flush() == b"50% 100%\nwarn"
    assert joiner.flush() == b""


def test_a_progress_bar_is_written_at_each_redraw():
    joiner = LineJoiner()
    assert joiner.feed(STDERR, b" 10%|#") == b""
    assert joiner.feed(STDERR, b"  |\r 20%|##") == b" 10%|#  |\r"
    assert joiner.feed(STDOUT, b"done\n") == b"done\n"
    assert joiner.flush() == b" 20%|##"


def test_a_line_longer_than_the_limit_is_written_anyway():
    joiner = LineJoiner()
    blob = b"x" * (MAX_PARTIAL + 1)
    assert joiner.feed(STDOUT, blob) == blob
    assert joiner.feed(STDOUT, b"y\n") == b"y\n"


def test_frames_are_read_across_short_socket_reads():
    payloads = [(STDOUT, b"hello\n"), (STDERR, b"oops"), (STDOUT, b"")]
    wire = b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in payloads)

    class Trickle(io.RawIOBase):
        """A socket that hands out three bytes per read."""

        def __init__(self) -> None:
            self.rest = wire

        def read(self, size: int = -1) -> bytes:
            chunk, self.rest = self.rest[: min(size, 3)], self.rest[min(size, 3) :]
            return chunk

    assert list(read_frames(Trickle())) == [(STDOUT, b"hello\n"), (STDERR, b"oops")]
    # a stream cut inside a frame yields what arrived and stops
    assert list(read_frames(io.BytesIO(wire[:10]))) == [(STDOUT, b"he")]


@pytest.mark.parametrize(
    ("tail", "limit"),
    [
        (b"sh: can't fork: Resource temporarily unavailable\n", True),
        (b"bash: fork: retry: Resource temporarily unavailable\n", True),
        (
            b"OpenBLAS: pthread_create failed for thread 3 of 8: Resource temporarily "
            b"unavailable\n",
            True,
        ),
        (
            b'  File "/usr/lib/python3.11/subprocess.py", line 1901, in _execute_child\n'
            b"    self.pid = _fork_exec(\n"
            b"               ^^^^^^^^^^^\n"
            b"BlockingIOError: [Errno 11] Resource temporarily unavailable\n",
            True,
        ),
        (
            b'  File "/app/sync.py", line 12, in <module>\n'
            b"    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            b"BlockingIOError: [Errno 11] Resource temporarily unavailable\n",
            False,
        ),
        (b"read /dev/ttyUSB0: Resource temporarily unavailable\n", False),
    ],
)
def test_only_a_refused_fork_in_the_log_is_taken_for_the_pids_limit(tmp_path, tail, limit):
    """The same strerror is what a lock taken without waiting or a non-blocking read
    fails with; only where a process or thread was being started is it the limit."""
    path = tmp_path / "run.log"
    with RunLog(path) as log:
        log.write(b"x" * 300_000 + b"\n" + tail)
        assert _said_no_more_processes(log) is limit
