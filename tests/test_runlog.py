"""The run log keeps each stream's lines whole and all of a finished process's output,
however slowly its reader thread is scheduled."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time

from mdivicomtools.execution.lines import MAX_PARTIAL
from mdivicomtools.execution.outputpipe import OutputPipe
from mdivicomtools.execution.runlog import DESCRIPTORS, PYTHON_STREAMS, RunLog


def test_ending_one_streams_lines_leaves_the_others_partial_line_alone(tmp_path):
    """The plugin's prints end before descriptor 1 is read to its end: ending both
    then split a line a forked process wrote in pieces."""
    path = tmp_path / "run.log"
    with RunLog(path) as log:
        log.write_lines(DESCRIPTORS, b"from the forked child")
        log.write_lines(PYTHON_STREAMS, b"no newline")
        log.end_lines(PYTHON_STREAMS)
        log.write_lines(DESCRIPTORS, b" 3\n")
        log.end_lines()
    assert path.read_bytes() == b"no newline\nfrom the forked child 3\n"


class SlowSink:
    """Takes its first chunk only after a while, as a reader thread starved of CPU."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.data = b""
        self.first = True

    def __call__(self, chunk: bytes) -> None:
        if self.first and chunk:
            self.first = False
            time.sleep(self.delay)
        self.data += chunk


def _started(delay: float) -> tuple[SlowSink, OutputPipe]:
    sink = SlowSink(delay)
    pipe = OutputPipe(sink)
    pipe.start()
    return sink, pipe


def test_what_was_written_before_the_marker_is_all_taken_however_slow_the_reader():
    sink, pipe = _started(delay=2.5)  # longer than the wait for the last writers
    os.write(pipe.write_fd, b"first line\n")
    os.write(pipe.write_fd, b"last, unfinished")
    os.write(pipe.write_fd, pipe.marker)
    pipe.close_write_end()
    assert pipe.finish(marked=True) is True
    assert sink.data == b"first line\nlast, unfinished"


def test_a_process_left_holding_the_pipe_is_not_waited_for():
    sink, pipe = _started(delay=0)
    holder = subprocess.Popen(
        ["sh", "-c", "sleep 30"], stdout=pipe.write_fd, start_new_session=True
    )
    try:
        os.write(pipe.write_fd, b"before\n" + pipe.marker)
        pipe.close_write_end()
        started = time.monotonic()
        assert pipe.finish(marked=True) is False
        assert time.monotonic() - started < 10
        assert sink.data == b"before\n"
    finally:
        holder.kill()
        holder.wait()


def test_without_a_marker_the_end_of_the_pipe_is_read_once_the_writers_are_gone():
    sink, pipe = _started(delay=2.5)
    writer = subprocess.Popen(["sh", "-c", "printf 'a\\nb'"], stdout=pipe.write_fd)
    pipe.close_write_end()
    writer.wait()
    assert pipe.finish(marked=False) is True
    assert sink.data == b"a\nb"


def test_the_marker_is_found_across_reads_and_a_look_alike_is_kept():
    sink = SlowSink(delay=0)
    pipe = OutputPipe(sink)
    marker = pipe.marker
    pipe._take(b"text\0")  # the NUL could start the marker: held back
    assert sink.data == b"text"
    pipe._take(b"more" + marker[:5])
    assert sink.data == b"text\0more"
    pipe._take(marker[5:] + b"after\n")
    assert sink.data == b"text\0moreafter\n"
    pipe._take(marker)  # past the marker, a second one is output like any other
    assert sink.data.endswith(marker)
    pipe.close_write_end()
    pipe.start()
    assert pipe.finish(marked=True) is True


def test_a_pipe_that_never_started_finishes():
    pipe = OutputPipe(SlowSink(delay=0))
    pipe.close_write_end()
    pipe.start()
    done = threading.Event()

    def finish() -> None:
        pipe.finish(marked=False)
        done.set()

    threading.Thread(target=finish, daemon=True).start()
    assert done.wait(10)


def test_a_plugin_that_put_a_file_on_descriptor_1_gets_no_marker_in_it(tmp_path):
    path = tmp_path / "run.log"
    kept = tmp_path / "kept.txt"
    with RunLog(path) as log, log.capture_stdout_fd():
        os.write(1, b"to the log\n")
        handle = os.open(kept, os.O_WRONLY | os.O_CREAT)
        os.dup2(handle, 1)  # as a careless plugin would, never putting it back
        os.close(handle)
        os.write(1, b"to the file\n")
    assert kept.read_bytes() == b"to the file\n"
    assert path.read_bytes() == b"to the log\n"


def test_a_line_left_open_is_ended_before_a_traceback_and_at_the_end(tmp_path):
    """A line longer than MAX_PARTIAL is written in pieces, so end_lines() had
    nothing left of it to end: the traceback, and the runner's next line on the
    terminal, were glued to its end."""
    path = tmp_path / "run.log"
    echo = io.StringIO()
    long_line = b"y" * (MAX_PARTIAL + 10)
    with RunLog(path, echo=echo) as log:
        log.write_lines(PYTHON_STREAMS, long_line)
        log.end_lines()
        log.diagnostic("Traceback (most recent call last):\n")
        log.end_line()
        log.end_line()
    assert path.read_bytes() == long_line + b"\nTraceback (most recent call last):\n"
    assert echo.getvalue() == long_line.decode() + "\n"


def test_a_log_that_ends_its_lines_gets_no_empty_line(tmp_path):
    path = tmp_path / "run.log"
    echo = io.StringIO()
    with RunLog(path, echo=echo) as log:
        log.write(b"done\n")
        log.end_line()
    assert path.read_bytes() == b"done\n"
    assert echo.getvalue() == "done\n"
