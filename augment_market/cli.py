"""The ``augment-market`` command line: one command per pipeline stage, plus ``run`` for the DAG.

Each command parses its options and calls one plain function from ``pipeline`` through
:func:`augment_market.commands.common.on_store`; nothing here knows how a stage works.

:func:`main` is the one error boundary. Every error prints one line on stderr, ``error: ...``,
and the command exits non-zero: 1 for an error the user can fix (a
:class:`foundation.errors.UserError`, an I/O error, invalid parameters), 2 for a mistyped
command line, 70 for anything else, which is a bug and says so; Ctrl-C says how to resume and
exits 130. The line starts a line of its own after a progress line. ``--debug`` anywhere on the
command line, or ``AUGMENT_MARKET_DEBUG=1``, prints the traceback above that line.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from augment_market.commands import data, flow, generator, reid, segment
from augment_market.commands.common import EXIT_USER, one_line
from foundation.errors import UserError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "AUGMENT_MARKET_DEBUG"
EXIT_BUG = 70  # sysexits' EX_SOFTWARE: an unexpected error
# Commands that finish each stage, for "needs stage X finished first" errors.
STAGE_COMMANDS = {
    "ingest": "augment-market ingest market1501 SOURCE --store STORE",
    "masks": "augment-market segment masks STORE",
    "parsing": "augment-market segment parsing STORE",
    "pairs": "augment-market pairs STORE",
    "generator": "augment-market train STORE --out RUN",
    "synthesize": "augment-market synthesize STORE --run RUN",
}
# `--help` lists the commands in the order a run uses them.
COMMAND_ORDER = (
    "doctor", "synth", "ingest", "segment", "pairs", "train", "evaluate", "evaluate-folder",
    "synthesize", "reid", "export", "run", "submit", "info", "migrate",
)  # fmt: skip


class _PipelineOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        def position(name: str) -> int:
            return COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER)

        return sorted(super().list_commands(ctx), key=position)


app = typer.Typer(
    cls=_PipelineOrder,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="SAN person-image generation for Re-ID augmentation. An error prints one line; "
    f"add {DEBUG_FLAG} anywhere (or set {DEBUG_ENV}=1) for its traceback.",
)
for module in (data, generator, flow):
    module.register(app)
app.add_typer(segment.segment_app, name="segment")
app.add_typer(reid.reid_app, name="reid")


def _is_command_line_error(error: BaseException) -> bool:
    """A mistyped command line: click's ClickException, which typer vendors (typer._click), so
    it is recognised by name as typer itself does."""
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__)


def describe(error: BaseException) -> tuple[str, int]:
    """The one line an error prints (without ``error: ``) and the exit code."""
    from storage import MissingInputError

    if _is_command_line_error(error):
        context = getattr(error, "ctx", None)
        path = context.command_path if context is not None else "augment-market"
        message = one_line(error.format_message())  # type: ignore[attr-defined]
        return f"{message} (see `{path} --help`)", int(error.exit_code)  # type: ignore[attr-defined]
    if isinstance(error, MissingInputError) and error.missing in STAGE_COMMANDS:
        if "augment-market" not in str(error):
            return f"{one_line(str(error))}: run `{STAGE_COMMANDS[error.missing]}`", EXIT_USER
    if isinstance(error, UserError):
        return one_line(str(error)), EXIT_USER
    if isinstance(error, OSError):  # outside any store (a parameters file): it names its file
        reason = error.strerror or str(error)
        return one_line(f"{reason}: {error.filename}" if error.filename else reason), EXIT_USER
    message = one_line(str(error)) or "(no message)"
    return f"unexpected {type(error).__name__}: {message}", EXIT_BUG


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit; the one place errors become their one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [arg for arg in args if arg != DEBUG_FLAG]
    # The command runs outside typer's own main, which turns Ctrl-C into a silent exit 130.
    command = typer.main.get_command(app)
    try:
        with command.make_context("augment-market", args) as context:
            code = command.invoke(context)
    except typer.Exit as exit_:  # --help, or a command's typer.Exit(code)
        code = exit_.exit_code
    except (Exception, KeyboardInterrupt) as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed already
            raise SystemExit(getattr(error, "exit_code", 2)) from None
        if debug:
            traceback.print_exception(error)
        if isinstance(error, KeyboardInterrupt):
            message, code = "interrupted; rerun the same command to resume", 130
        else:
            message, code = describe(error)
            if code == EXIT_BUG and not debug:
                message += f" (a bug: rerun with {DEBUG_FLAG} for the traceback and report it)"
        typer.echo(f"error: {message}", err=True)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # torchrun -m augment_market.cli train ...
    main()
