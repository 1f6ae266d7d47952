"""What every command shares: the store argument, the way a command runs a stage on a store
(:func:`on_store`), I/O errors told with the store they hit, progress bars and ``--dry-run``
output."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from foundation.errors import UserError

if TYPE_CHECKING:
    from augment_market.progress import CommandProgress

T = TypeVar("T")
StoreArg = Annotated[str, typer.Argument(help="Store folder or fsspec URL.")]
DeviceOption = Annotated[str, typer.Option(help="cpu or cuda.")]
DryRunOption = Annotated[
    bool,
    typer.Option(
        help="Print parameters, FLOPs per step and in all, and GPU time estimates; write nothing."
    ),
]
# What each command's ``progress(done, total)`` counts (default: store blocks of 64 images).
EXIT_USER = 1  # the user can fix it: the message says how
PROGRESS_UNITS = {"train": "steps", "reid": "steps", "evaluate": "test pairs"}
# What a rerun after a full disk does, for most commands.
STAGE_RESUMES = "a stage resumes after its last finished block"


class ParametersError(UserError, ValueError):
    """A parameters file or a set of settings that does not validate."""


def one_line(message: str) -> str:
    """``message`` with its lines joined by spaces."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def progress_bar(label: str, status: Callable[[], str] | None = None) -> CommandProgress:
    """A progress bar on a terminal, plain lines elsewhere (see :mod:`augment_market.progress`)."""
    from augment_market.progress import CommandProgress

    return CommandProgress(label, PROGRESS_UNITS.get(label, "blocks"), status=status)


@contextmanager
def naming(where: str, rerun: str = STAGE_RESUMES) -> Iterator[None]:
    """Tell an I/O error that names no file (a full disk, a lost connection) with ``where``,
    the store or folders the command writes; errors the user can fix pass unchanged.

    Args:
        rerun: what rerunning the command does after the disk is freed (the advice).
    """
    try:
        yield
    except OSError as error:
        if isinstance(error, UserError) or error.errno is None:  # ours, with its own message
            raise
        reason = error.strerror or str(error) or type(error).__name__
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"no space left on the disk of {where} ({reason}); free some space there or "
                f"use a folder on another disk, then rerun ({rerun})"
            ) from error
        if error.filename is not None:
            raise UserError(f"{reason}: {error.filename} (while working on {where})") from error
        raise UserError(f"{reason} while working on {where}") from error


def on_store(
    store: str,
    stage: Callable[..., T],
    /,
    *args: Any,
    write: bool = True,
    progress: str | None = None,
    status: Callable[[], str] | None = None,
    out: Path | None = None,
    rerun: str = STAGE_RESUMES,
    **options: Any,
) -> T:
    """Open ``store`` and call ``stage(opened_store, *args, **options)``: the one way every
    command runs a stage.

    Args:
        write: open the store for writing (stages) or read only (info, export, comparisons).
        progress: label of the progress bar on stderr, passed as ``progress=``.
        status: polled by the progress bar for a short text (training losses).
        out: a folder the stage writes besides the store, named in I/O errors.
        rerun: what a rerun does, said after a full disk.
    """
    from storage import open_store

    where = f"store {store}" if out is None else f"store {store} or {out}"
    with naming(where, rerun):
        opened = open_store(store, mode="r+" if write else "r")
        if progress is None:
            return stage(opened, *args, **options)
        with progress_bar(progress, status) as report:
            return stage(opened, *args, progress=report, **options)


def print_estimate(what: str, cost: Any, *, sample: str, note: str | None = None) -> None:
    """``--dry-run``'s output: what would run, the cost lines, and that nothing was written."""
    from foundation.cost import describe

    typer.echo(f"dry run: {what}")
    for line in describe(cost, sample=sample):
        typer.echo(line)
    if note is not None:
        typer.echo(f"note: {note}")
    typer.echo("nothing was written")


def settings_of(model: type[T], what: str, /, **values: Any) -> T:
    """``model`` (a pydantic settings model) validated from a command's options (None: the
    model's default); a value it refuses is one line starting with ``what``."""
    import pydantic

    def given(value: Any) -> Any:
        return (
            {k: given(v) for k, v in value.items() if v is not None}
            if isinstance(value, dict)
            else value
        )

    try:
        return model.model_validate(given(values))  # type: ignore[attr-defined, no-any-return]
    except pydantic.ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: "
            f"{problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()
        ]
        raise ParametersError(f"{what}: {'; '.join(problems)}") from None


def default(model: Any, field: str) -> Any:
    """The default of ``model.field`` (a pydantic settings model's or a config dataclass's):
    the one place a command's option default comes from."""
    if dataclasses.is_dataclass(model):
        declared = {f.name: f for f in dataclasses.fields(model)}[field]
        if declared.default is dataclasses.MISSING:
            return declared.default_factory()  # type: ignore[misc, operator]
        return declared.default
    return model.model_fields[field].get_default(call_default_factory=True)


def field_option(model: Any, field: str, *names: str, **options: Any) -> Any:
    """A ``typer.Option`` for the settings field ``model.field``: its default, its description
    as the help (``names``, ``options``: typer's)."""
    return typer.Option(
        default(model, field), *names, help=model.model_fields[field].description, **options
    )


def listed(model: Any, field: str) -> str:
    """The default of list field ``model.field`` as a comma-separated option's default."""
    return ",".join(default(model, field))


def run_registered(
    name: str,
    store: str,
    settings: Any,
    *,
    label: str | None = None,
    folder: Path | None = None,
    status: Callable[[], str] | None = None,
    **job: Any,
) -> Any:
    """Run the stage ``name`` of the stage registry on ``store`` with its ``settings`` object,
    as the flow's task does, with a progress bar labelled ``name``.

    Args:
        label: the progress bar's (default: ``name``).
        folder: the folder it works in besides the store (:attr:`StageJob.folder`).
        job: the rest of :class:`pipeline.stage_registry.StageJob` (device, offline, extra).
    """
    from pipeline.stage_registry import REGISTRY, StageJob

    def run(opened: Any, *, progress: Any) -> Any:
        return REGISTRY[name].run(  # type: ignore[index]
            settings, StageJob(opened, store, folder=folder, progress=progress, **job)
        )

    return on_store(store, run, progress=label or name, status=status, out=folder)
