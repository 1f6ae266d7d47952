"""Augmentation sets by name: which store group and stage hold each, the one target-pose draw
every source shares, and whether a set is there (no torch: the light commands use it).

A set is ``original`` (the real training images alone) or an augmentation set written by
:mod:`pipeline.synthesize`: ``generator``, ``copies``, ``flip``, ``paint-by-parts`` or a folder
set's own name, at an alpha.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from foundation.errors import SettingsError
from storage import MissingInputError, PersonStore

# Sets named after their source; a folder set takes any other name.
BUILT_IN_SETS = ("generator", "copies", "flip", "paint-by-parts")
# The real training images alone: the control every augmentation is measured against.
ORIGINAL = "original"
SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def set_group(set_name: str, alpha: int) -> str:
    """The store group of a set, ``generated/alpha2`` or ``generated/copies-alpha2``."""
    if set_name == "generator":
        return f"generated/alpha{alpha}"
    return f"generated/{set_name}-alpha{alpha}"


def synthesis_stage_name(set_name: str) -> str:
    """The stage that writes a set: ``synthesize`` (generator), ``synthesize_copies``..."""
    return "synthesize" if set_name == "generator" else f"synthesize_{set_name}"


def check_set_name(set_name: str, source: str) -> None:
    """Refuse a set name that cannot be a store group, or that a built-in source owns.

    Raises:
        SettingsError: names the problem and a valid choice.
    """
    if set_name == ORIGINAL or not SET_NAME.fullmatch(set_name):
        raise SettingsError(
            f"set name {set_name!r}: use 1-40 lower-case letters, digits, '-' or '_', not "
            f"'{ORIGINAL}'"
        )
    if source == "folder" and set_name in BUILT_IN_SETS:
        raise SettingsError(
            f"set name {set_name!r} belongs to --source {set_name}; name the folder's set "
            "after its method (--name patn)"
        )


def draw_target_poses(person_ids: np.ndarray, alpha: int, rng: np.random.Generator) -> np.ndarray:
    """For each image, ``alpha - 1`` distinct other images of other identities.

    Args:
        person_ids: int [M] identity of each training image.
        alpha: augmentation factor (>= 2).
    Returns:
        int64 [M, alpha - 1] positions into ``person_ids``; never the image itself, never its
        identity, no repeats within a row. Deterministic for ``rng``'s seed.
    Raises:
        SettingsError: alpha < 2, or too few other-identity images for ``alpha - 1`` draws.
    """
    if alpha < 2:
        raise SettingsError(
            f"alpha must be at least 2 (alpha - 1 generated per image), got {alpha}"
        )
    count = len(person_ids)
    draws = alpha - 1
    fewest_others = count - np.bincount(person_ids).max()
    if fewest_others < draws:
        raise SettingsError(
            f"alpha {alpha} needs {draws} poses of other identities per image; "
            f"the largest identity leaves only {fewest_others}"
        )
    targets = rng.integers(0, count, (count, draws))
    while True:  # redraw the clashes (same identity, or a repeat in the row) until none remain
        same_id = person_ids[targets] == person_ids[:, None]
        repeated = np.zeros_like(same_id)
        for j in range(1, draws):  # alpha is small: a column loop is clearer than a sort
            repeated[:, j] = (targets[:, :j] == targets[:, j : j + 1]).any(axis=1)
        clash = same_id | repeated
        if not clash.any():
            return targets.astype(np.int64)
        targets[clash] = rng.integers(0, count, int(clash.sum()))


def synthesis_plan(index: pd.DataFrame, alpha: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and target store rows of every new image, source-major; the same for every
    source.

    Args:
        index: the store's index (training rows with a known identity are the sources).
    Returns:
        ``(sources, targets)``, int64 [M * (alpha - 1)] each: row ``r`` of a set draws the
        person of row ``sources[r]`` in the pose of row ``targets[r]``. Deterministic for
        ``seed`` (the fan-out workers recompute it instead of receiving it).
    """
    known = index["person_id"].to_numpy() > 0
    train_rows = np.flatnonzero((index["split"] == "train").to_numpy() & known)
    person_ids = index["person_id"].to_numpy(np.int64)[train_rows]
    targets = train_rows[draw_target_poses(person_ids, alpha, np.random.default_rng(seed))]
    return np.repeat(train_rows, alpha - 1), targets.reshape(-1)


def write_pairs(store: PersonStore, path: str | Path, *, alpha: int, seed: int = 0) -> int:
    """Write the plan as a PATN/GFLA pair list: a ``from,to`` header, then one line of store
    file names per new image, in set order (what a method's test script reads).

    Returns:
        The number of pairs written.
    """
    sources, targets = synthesis_plan(store.index, alpha, seed)
    names = store.index["filename"].to_numpy()
    table = pd.DataFrame({"from": names[sources], "to": names[targets]})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return len(table)


def finished_set_group(store: PersonStore, set_name: str, alpha: int, *, stage: str) -> str:
    """The group of a set whose synthesis finished at ``alpha``, e.g. ``generated/alpha2``.

    Args:
        stage: the stage asking, named in the error.
    Raises:
        MissingInputError: the set was never synthesized, is unfinished, or its last synthesis
            was at another alpha; the message gives the command that makes it.
    """
    group = set_group(set_name, alpha)
    stamp = store.stamp(synthesis_stage_name(set_name))
    if stamp is not None and stamp.config.get("group") == group and store.has(group):
        return group
    source = {"generator": "generator --run RUN"}.get(set_name, set_name)
    if set_name not in BUILT_IN_SETS:
        source = f"folder --folder DIR --name {set_name}"
    make = f"`augment-market synthesize {store.url} --source {source} --alpha {alpha}`"
    if stamp is not None and "alpha" in stamp.config:
        found = f"has set '{set_name}' at alpha {stamp.config['alpha']}, not alpha {alpha}"
        advice = f"pass --alpha {stamp.config['alpha']}, or run {make}"
    else:
        found, advice = f"has no set '{set_name}'", f"run {make} first"
    raise MissingInputError(
        f"store {store.url} {found}; {advice}",
        stage=stage,
        missing=synthesis_stage_name(set_name),
    )
