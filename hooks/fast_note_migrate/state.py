"""Compare the migrations folder with the history: one state per migration."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import ExitCode
from .history import Row
from .migrations import Migration


class State(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    FAILED = "failed"  # started, never finished, not rolled back: blocks deploy (P3009)
    RUNNING = "running"  # unfinished, and a deployer holds the migration lock
    INTERRUPTED = "interrupted"  # a statement-by-statement run stopped: deploy resumes it
    EDITED = "edited"  # applied, but the local file no longer matches its checksum
    MISSING_LOCALLY = "missing_locally"  # applied, but no local folder (database ahead)
    ROLLED_BACK = "rolled_back"  # only rolled-back rows and no local folder


@dataclass
class MigrationState:
    name: str
    state: State
    local: Migration | None
    rows: list[Row] = field(default_factory=list)

    @property
    def was_rolled_back(self) -> bool:
        return any(r.is_rolled_back for r in self.rows)

    @property
    def last_row(self) -> Row | None:
        return self.rows[-1] if self.rows else None

    @property
    def is_contract(self) -> bool:
        """Marked ``-- fast-note-migrate: phase=contract`` (applied after the rollout)."""
        from .phases import is_contract

        return is_contract(self.local)

    def to_json(self) -> dict[str, object]:
        row = self.last_row
        return {
            "name": self.name,
            "state": self.state.value,
            "local": self.local is not None,
            "phase": "contract" if self.is_contract else "expand",
            "rolled_back_before": self.was_rolled_back,
            "checksum": self._checksum(),
            "started_at": row.started_at.isoformat() if row else None,
            "finished_at": row.finished_at.isoformat() if row and row.finished_at else None,
            "logs": row.logs if row and self.state in _WITH_LOGS else None,
        }

    def _checksum(self) -> str | None:
        """The file's for what deploy would apply, else the applied one's."""
        row = self.last_row
        if self.local is not None and (row is None or self.state is State.PENDING):
            return self.local.checksum
        return row.checksum if row else None


_WITH_LOGS = (State.FAILED, State.RUNNING, State.INTERRUPTED)


def _classify(local: Migration | None, rows: list[Row], lock_held_elsewhere: bool) -> State:
    unfinished = [r for r in rows if r.is_failed]
    if unfinished:
        row = unfinished[-1]
        # Without logs it is Prisma's started row, or ours with its progress: both are
        # running while another session holds the lock. A row with a failure text is not.
        if lock_held_elsewhere and (row.logs is None or row.progress is not None):
            return State.RUNNING
        return State.INTERRUPTED if row.progress is not None else State.FAILED
    applied = [r for r in rows if r.is_applied]
    if applied:
        if local is None:
            return State.MISSING_LOCALLY
        return State.APPLIED if local.matches(applied[-1].checksum) else State.EDITED
    return State.PENDING if local is not None else State.ROLLED_BACK


@dataclass
class Report:
    """Every migration known locally or in the database, in name order."""

    items: list[MigrationState]

    @classmethod
    def build(
        cls, local: list[Migration], rows: list[Row], *, lock_held_elsewhere: bool = False
    ) -> Report:
        """``lock_held_elsewhere``: another session holds the migration lock, so an
        unfinished row may be a migration being applied right now."""
        by_name: dict[str, list[Row]] = {}
        for row in rows:
            by_name.setdefault(row.migration_name, []).append(row)
        local_by_name = {m.name: m for m in local}
        names = sorted(set(local_by_name) | set(by_name))
        return cls(
            [
                MigrationState(
                    n,
                    _classify(local_by_name.get(n), by_name.get(n, []), lock_held_elsewhere),
                    local_by_name.get(n),
                    by_name.get(n, []),
                )
                for n in names
            ]
        )

    def having(self, state: State) -> list[MigrationState]:
        return [m for m in self.items if m.state is state]

    @property
    def pending(self) -> list[MigrationState]:
        return self.having(State.PENDING)

    @property
    def unfinished(self) -> list[MigrationState]:
        """Being applied now, or interrupted (the next deploy resumes them)."""
        return [m for m in self.items if m.state in (State.RUNNING, State.INTERRUPTED)]

    @property
    def required_pending(self) -> list[MigrationState]:
        """Migrations the new image needs and does not have yet: pending, running or
        interrupted, but the pending contract ones, which the post-upgrade run applies
        once the new pods are out."""
        return [
            m
            for m in self.items
            if (m.state is State.PENDING and not m.is_contract)
            or m.state in (State.RUNNING, State.INTERRUPTED)
        ]

    @property
    def failed(self) -> list[MigrationState]:
        return self.having(State.FAILED)

    @property
    def edited(self) -> list[MigrationState]:
        return self.having(State.EDITED)

    @property
    def missing_locally(self) -> list[MigrationState]:
        return self.having(State.MISSING_LOCALLY)

    @property
    def rolled_back(self) -> list[MigrationState]:
        return [m for m in self.items if m.was_rolled_back]

    def exit_code(self, *, strict_missing: bool, contract_ok: bool = False) -> ExitCode:
        """Worst first: failed (4), drift (5), pending (3; ``contract_ok``: pending contract
        migrations do not count)."""
        if self.failed:
            return ExitCode.BLOCKED
        if self.edited or (strict_missing and self.missing_locally):
            return ExitCode.DRIFT
        if self.required_pending if contract_ok else (self.pending or self.unfinished):
            return ExitCode.NOT_UP_TO_DATE
        return ExitCode.OK

    def counts(self) -> dict[str, int]:
        return {
            "local": sum(1 for m in self.items if m.local is not None),
            "applied": len(self.having(State.APPLIED)),
            "pending": len(self.pending),
            "failed": len(self.failed),
            "running": len(self.having(State.RUNNING)),
            "interrupted": len(self.having(State.INTERRUPTED)),
            "edited": len(self.edited),
            "missing_locally": len(self.missing_locally),
            "rolled_back": len(self.rolled_back),
        }
