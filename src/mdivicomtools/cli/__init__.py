"""The `mdivicom` command: parse, print, exit codes, and nothing else.

Start-up cost matters (people tab-complete and pipe this command), so this
package imports only click at module level; each command imports the library
modules it needs when it runs. Library errors arrive as typed exceptions and are
turned into one-line messages here, at the edge.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from mdivicomtools._version import __version__
from mdivicomtools.cli.backends import backends_group
from mdivicomtools.cli.batches import batches_group
from mdivicomtools.cli.bundles import bundles_group
from mdivicomtools.cli.dataset import dataset_group
from mdivicomtools.cli.hooks import hooks_group
from mdivicomtools.cli.plugins import plugins_group
from mdivicomtools.cli.run import run_command
from mdivicomtools.cli.runs import runs_group

#: exit status of a process whose reader closed the pipe (128 + SIGPIPE), as coreutils
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    verbose = False


@click.group(context_settings=CONTEXT_SETTINGS)
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


for command in (
    plugins_group,
    hooks_group,
    backends_group,
    run_command,
    runs_group,
    bundles_group,
    dataset_group,
    batches_group,
):
    cli.add_command(command)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final
    flush cannot raise a second BrokenPipeError (the recipe of Python's docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with the documented codes.

    The codes are listed in docs/reference/exit-codes.md.
    """
    from mdivicomtools.errors import MdivicomError

    _State.verbose = False
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mdivicom",
            standalone_mode=False,
        )
        sys.stdout.flush()
        # without standalone mode click returns the code of click.exceptions.Exit
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except MdivicomError as exc:
        if _State.verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _State.verbose:
            raise
        click.echo(
            f"Error: internal error ({type(exc).__name__}: {exc}); run with -v for the traceback",
            err=True,
        )
        sys.exit(1)
