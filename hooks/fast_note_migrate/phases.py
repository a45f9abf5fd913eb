"""Expand/contract phases.

A migration marked with the comment ``-- fast-note-migrate: phase=contract`` (anywhere in
the file, on a line of its own) is a *contract* step: it removes what the old release
still uses, so it may only run once the new pods have replaced the old ones. Every
other migration is an *expand* step.

- ``deploy --phase expand`` (pre-upgrade) applies the pending migrations in name order
  and stops before the first contract migration. It never skips one: the history stays
  a prefix of the folder's name order, exactly what Prisma would have applied. If an
  expand migration comes after a pending contract migration it refuses before changing
  anything (the new pods would wait for that migration, and the contract step would
  wait for the new pods).
- ``deploy --phase contract`` (post-upgrade) waits for the rollout, then applies
  everything pending in order.
- ``deploy --phase all`` (the default) applies everything in order, as Prisma does.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum

from .errors import ConfigError
from .migrations import Migration

log = logging.getLogger(__name__)

_MARKER = re.compile(
    r"^[ \t]*--[ \t]*fast-note-migrate:[ \t]*phase[ \t]*=[ \t]*(\S*)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
MARKER = "-- fast-note-migrate: phase=contract"


class Phase(StrEnum):
    ALL = "all"
    EXPAND = "expand"
    CONTRACT = "contract"


def phase_of(migration: Migration) -> Phase:
    """EXPAND or CONTRACT, from the migration's marker comment (EXPAND without one)."""
    if not migration.has_script:
        return Phase.EXPAND
    found = _MARKER.search(migration.text)
    if found is None:
        return Phase.EXPAND
    value = found.group(1).lower()
    if value not in (Phase.EXPAND, Phase.CONTRACT):
        raise ConfigError(
            f"{migration.script_path}: unknown phase {found.group(1)!r}",
            hint=f"write `{MARKER}` (or phase=expand, the default)",
        )
    return Phase(value)


def is_contract(migration: Migration | None) -> bool:
    return migration is not None and phase_of(migration) is Phase.CONTRACT


def select(pending: list[Migration], phase: Phase) -> list[Migration]:
    """The pending migrations a run of ``phase`` applies, in order."""
    if phase is not Phase.EXPAND:
        return pending
    for index, migration in enumerate(pending):
        if not is_contract(migration):
            continue
        later = [m.name for m in pending[index + 1 :] if not is_contract(m)]
        if later:
            raise ConfigError(
                f"expand migration {later[0]} comes after the pending contract migration "
                f"{migration.name}: an expand run cannot apply it without applying the "
                "contract step first; nothing was changed",
                hint=f"if {migration.name} belongs to an earlier release that has fully "
                "rolled out, run `deploy --phase contract` first; if it belongs to this "
                f"release, rename it so that it sorts after {later[-1]} (contract steps come "
                "last in a release)",
            )
        waiting = pending[index:]
        log.info(
            "expand phase: %d migration(s) now; %d contract migration(s) from %s on wait "
            "for the post-upgrade run (deploy --phase contract)",
            index,
            len(waiting),
            migration.name,
        )
        return pending[:index]
    return pending
