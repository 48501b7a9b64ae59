"""The `mdivicom` command: parse, print, exit codes, and nothing else.

Start-up cost matters (people tab-complete and pipe this command), so this
package imports only click at module level; each command imports the library
modules it needs when it runs. Library errors arrive as typed exceptions and are
turned into one-line messages here, at the edge.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from mdivicomtools._version import __version__
from mdivicomtools.cli.supervisor import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, supervise

#: set by the completion scripts click generates (`_MDIVICOM_COMPLETE=bash_source mdivicom`)
COMPLETE_ENV = "_MDIVICOM_COMPLETE"

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: every command, and where it is defined: a command's module, and what that module
#: imports, loads only when the command runs or a help text lists it (a script calling
#: `mdivicom plugins list --json` in a loop pays for that command alone)
COMMANDS = {
    "backends": "mdivicomtools.cli.backends:backends_group",
    "batches": "mdivicomtools.cli.batches:batches_group",
    "bundles": "mdivicomtools.cli.bundles:bundles_group",
    "config": "mdivicomtools.cli.config:config_group",
    "dataset": "mdivicomtools.cli.dataset:dataset_group",
    "hooks": "mdivicomtools.cli.hooks:hooks_group",
    "images": "mdivicomtools.cli.images:images_group",
    "plugins": "mdivicomtools.cli.plugins:plugins_group",
    "rerun": "mdivicomtools.cli.rerun:rerun_command",
    "run": "mdivicomtools.cli.run:run_command",
    "runs": "mdivicomtools.cli.runs:runs_group",
    "verify": "mdivicomtools.cli.verify:verify_command",
}


class _LazyGroup(click.Group):
    """The top-level group, importing a command's module on first use (click's
    documented pattern for lazily loaded subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's, but a mistyped command gets its "did you mean": click looks for one
        among the commands loaded so far, which here are none (`mdivicom plugin list`
        said only `No such command 'plugin'.`)."""
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):
            from mdivicomtools.common.text import close_matches

            close = close_matches(name, self.list_commands(ctx))
            ctx.fail(
                f"No such command {name!r}." + (f" Did you mean {close[0]!r}?" if close else "")
            )
        return super().resolve_command(ctx, args)


class _State:
    verbose = False


@click.group(cls=_LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(
    __version__, "--version", prog_name="mdivicom", message="%(prog)s %(version)s"
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug details on errors.")
def cli(verbose: bool) -> None:
    """Discover and run mdivicomtools analysis plugins.

    Plugins come from installed Python packages (entry-point group
    mdivicomtools.plugins) and from manifest files in the folders named by
    MDIVICOM_PLUGIN_PATH.
    """
    _State.verbose = verbose


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final
    flush cannot raise a second BrokenPipeError (the recipe of Python's docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _stdout_refuses(exc: BaseException) -> str | None:
    """Why stdout cannot be written, when `exc` came from writing it, else None.

    A stdout on a full disk (`mdivicom runs list > /full/log`, `> /dev/full`) or
    a terminal gone bad (EIO) failed the command as `internal error (OSError:
    [Errno 28] No space left on device)`, as if mdivicom had a bug. Every line
    goes out through `click.echo`, so the error is stdout's when it was raised
    in an echo to descriptor 1. Then stdout goes to /dev/null, so the
    interpreter's last flush does not fail again.
    """
    if not isinstance(exc, OSError) or exc.filename is not None:
        return None
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code is click.utils.echo.__code__ and _is_stdout(frame.f_locals.get("file")):
            _silence_stdout()
            return exc.strerror or str(exc)
        trace = trace.tb_next
    return None


def _is_stdout(stream: object) -> bool:
    """Whether `stream` writes to descriptor 1 (a text or a binary stdout)."""
    fileno = getattr(stream, "fileno", None)
    try:
        return callable(fileno) and fileno() == 1
    except (OSError, ValueError):  # closed, or no descriptor (a test's StringIO)
        return False


def _wants_json(args: Sequence[str]) -> bool:
    """`--json` anywhere before `--`: then even an error is a JSON document on stdout."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def _fail(message: str, code: int, error_type: str, as_json: bool) -> NoReturn:
    from mdivicomtools.cli.output import silence_standard_streams

    try:
        click.echo(f"Error: {message}", err=True)
    except OSError:
        # no stderr to say it on (a closed terminal, whose SIGHUP stopped the
        # command): the documented code still ends it, not a traceback
        silence_standard_streams()
    if as_json:
        from mdivicomtools.cli.output import echo_json

        with contextlib.suppress(OSError):
            echo_json({"error": {"type": error_type, "message": message, "exit_code": code}})
    sys.exit(code)


def _exit_now_if_requested(code: int) -> None:
    """End the `mdivicom` process at once when the command said all its work is done
    (`request_fast_exit`): flush what was printed, then skip the interpreter's teardown.
    Only for the program itself (argv None), never for a caller of main() in-process."""
    from mdivicomtools.cli.output import fast_exit_requested

    if fast_exit_requested():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            _silence_stdout()
            os._exit(EXIT_BROKEN_PIPE)
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with the documented codes.

    The codes are listed in docs/reference/exit-codes.md. Click's own main loop
    is not used: it turns a closed pipe into exit status 1, indistinguishable
    from a failed plugin; here every command exits 141 when its reader went
    away, as coreutils do, and 130 with one `Error:` line on Ctrl-C, SIGTERM (a
    scheduler's stop), SIGQUIT (Ctrl-\\) or SIGHUP (a closed terminal), whatever the
    command was doing.
    """
    from mdivicomtools.errors import MdivicomError

    _State.verbose = False
    args = list(argv) if argv is not None else sys.argv[1:]
    if os.environ.get(COMPLETE_ENV):  # shell completion: click's own protocol, then exit
        cli.main(args=args, prog_name="mdivicom", complete_var=COMPLETE_ENV)
    if argv is None:  # the program itself, never a caller of main() in-process
        from mdivicomtools.cli.output import open_closed_standard_streams, tolerate_any_text

        # What the interpreter, click and msgspec made so far lives until exit: out of
        # the collector's sight, the full collections that discovery's imports set off
        # (one module per plugin) no longer walk it each time. That was about 5 % of
        # `plugins list`'s CPU. Not for an in-process caller, whose garbage so far
        # would never be freed.
        gc.freeze()
        open_closed_standard_streams()  # first: before any descriptor is opened
        tolerate_any_text()
        supervise(args)
    as_json = _wants_json(args)
    from mdivicomtools.common.signals import interrupt_name, sigterm_as_interrupt
    from mdivicomtools.errors import command_line_words

    with command_line_words():  # every message of the command names its flags
        try:
            # SIGTERM, SIGHUP and SIGQUIT stop every command as Ctrl-C does (exit 130, one
            # line), not with the shell's 143, 129 or 131; `run` and batches install their
            # own handlers inside to record first
            with sigterm_as_interrupt(), cli.make_context("mdivicom", args) as ctx:
                cli.invoke(ctx)
            sys.stdout.flush()
        except click.exceptions.Exit as exc:
            if argv is None:
                _exit_now_if_requested(exc.exit_code)
            with contextlib.suppress(BrokenPipeError):
                sys.stdout.flush()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if as_json:
                _fail(exc.format_message(), exc.exit_code, type(exc).__name__, as_json)
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:
            # click turns Ctrl-C at a prompt into Abort, keeping the KeyboardInterrupt as context
            cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__context__
            name = interrupt_name(cause)
            # what was running, when the code it stopped could tell (a hung validation hook)
            during = getattr(cause, "during", "")
            _fail(
                f"interrupted by {name}" + (f" {during}" if during else ""),
                EXIT_INTERRUPTED,
                "Interrupted",
                as_json,
            )
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except MdivicomError as exc:
            if _State.verbose:
                import traceback

                traceback.print_exc()
            _fail(str(exc), exc.exit_code, type(exc).__name__, as_json)
        except PermissionError as exc:
            # a folder this user may not enter (a colleague's results, another user's home):
            # not a fault of mdivicom, which `internal error` said it was
            if _State.verbose:
                raise
            where = f" {str(exc.filename)!r}" if exc.filename else ""
            _fail(
                f"cannot access{where}: {exc.strerror or exc}; check its permissions or ask "
                "its owner (run with -v for the traceback)",
                1,
                "PermissionDenied",
                as_json,
            )
        except Exception as exc:
            if _State.verbose:
                raise
            refused = _stdout_refuses(exc)
            if refused is not None:
                _fail(
                    f"cannot write to stdout ({refused}); what the command did is done (a run's "
                    "record is written), only what it printed there is lost",
                    1,
                    "OutputFailed",
                    as_json,
                )
            _fail(
                f"internal error ({type(exc).__name__}: {exc}); run with -v for the traceback",
                1,
                "InternalError",
                as_json,
            )
