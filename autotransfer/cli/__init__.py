"""The ``autotransfer`` command line.

One module per command under ``autotransfer.cli``; heavy imports (TensorFlow, Keras) happen inside
the commands, so ``autotransfer --help`` answers at once. Exit codes: 0 success, 2 the input needs
fixing (a clear message says what and how), 70 internal failure, 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from autotransfer import __version__

#: command name -> module under ``autotransfer.cli`` that defines ``command``.
COMMANDS: dict[str, str] = {
    "advise": "advise",
    "backbones": "backbones",
    "profile": "profile",
    "probe": "probe",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "tune": "tune",
    "auto": "auto",
}

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
EXIT_INTERRUPTED = 130


class LazyGroup(click.Group):
    """A group whose subcommands are imported from their own modules when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"autotransfer.cli.{module}").command
        if not any(p.name in ("verbose", "tf_logs") for p in command.params):
            command.params.append(_command_verbose_option())
        return command


def _quiet_unless_verbose(ctx: click.Context, param: click.Parameter, verbose: bool) -> None:
    """Keep TensorFlow's C++ log lines off the terminal unless ``--verbose`` or
    ``AUTOTRANSFER_VERBOSE``/``AUTOTRANSFER_DEBUG`` ask for them (before TensorFlow loads)."""
    from autotransfer._quiet import loud_tensorflow, quiet_tensorflow, verbose_requested

    if verbose or verbose_requested():
        loud_tensorflow()
    elif ctx.parent is None:  # the root decides the default; a command's flag only adds
        quiet_tensorflow()


def _command_verbose_option() -> click.Option:
    """``--verbose`` for a command that has none of its own (``train`` has one: Keras bars)."""
    return click.Option(["--verbose", "tf_logs"], is_flag=True, expose_value=False,
                        is_eager=True, callback=_quiet_unless_verbose,
                        help="Show TensorFlow's own log lines (oneDNN, CUDA, absl); the same "
                        "as 'autotransfer --verbose COMMAND'.")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="autotransfer")
@click.option("--verbose", is_flag=True, expose_value=False, callback=_quiet_unless_verbose,
              help="Show TensorFlow's own log lines (oneDNN notices, CUDA/cuInit, absl), "
              "hidden by default [env: AUTOTRANSFER_VERBOSE=1, or AUTOTRANSFER_DEBUG=1].")
def cli() -> None:
    """Automatic, explainable transfer learning for folders of labelled images.

    \b
    Exit codes: 0 success; 2 the input needs fixing (the message says how);
    70 internal failure (set AUTOTRANSFER_DEBUG=1 for the traceback); 130 interrupted.
    """


def _environment_problem(exc: BaseException) -> str | None:
    """The message for an operating-system error the user can fix (permissions, a read-only or
    full disk, a file where a folder should be), or ``None`` for anything else."""
    import errno

    fixable = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
               errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}
    if not isinstance(exc, OSError) or exc.errno not in fixable:
        return None
    where = f" '{exc.filename}'" if exc.filename else ""
    return (f"Cannot access{where}: {exc.strerror or exc}. Check the path, its permissions and "
            "the free disk space, then run the command again.")


def _user_error_inside(exc: BaseException) -> str | None:
    """The message of an autotransfer error that TensorFlow wrapped in its own (an image that
    cannot be read any more when the input pipeline decodes it: changed or damaged since it was
    profiled), or ``None``."""
    if not type(exc).__module__.startswith("tensorflow"):
        return None
    from autotransfer.errors import AutoTransferError

    kinds, found = [AutoTransferError], []
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        found.append(kind.__name__)
    text = str(exc)
    for name in found:
        at = text.find(f"{name}: ")
        if at >= 0:
            return text[at + len(name) + 2:].split("\n", 1)[0].strip()
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to clean messages and exit codes."""
    from autotransfer.errors import AutoTransferError

    debug = os.environ.get("AUTOTRANSFER_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="autotransfer", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:  # usage errors: click's own message
        exc.show()
        return EXIT_USER_ERROR
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except AutoTransferError as exc:
        if debug:
            raise
        click.secho(f"Error: {exc}", fg="red", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            raise
        problem = _environment_problem(exc) or _user_error_inside(exc)
        if problem:
            click.secho(f"Error: {problem}", fg="red", err=True)
            return EXIT_USER_ERROR
        click.secho(
            f"Internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in autotransfer, not in your data. Rerun with AUTOTRANSFER_DEBUG=1 "
            "to see the traceback and include it in a bug report.",
            fg="red",
            err=True,
        )
        return EXIT_INTERNAL_ERROR
    return EXIT_OK


def run() -> None:
    """The console script: :func:`main`, then exit without the interpreter's last garbage
    collections, which walk every object TensorFlow and Keras made (about 2 s of a probe's wall
    time, after everything is written): :func:`gc.freeze` leaves them to the operating system.
    The console script's process also freezes the heap once TensorFlow is imported
    (:data:`autotransfer._process.freeze_after_import`), which the library never does."""
    import gc

    from autotransfer import _process

    _process.freeze_after_import = True
    code = main()
    gc.freeze()
    sys.exit(code)
