"""The SQL tier of targeted evaluation (service/reads.py): what evaluating flags of one
environment may need, read in one transaction."""

from __future__ import annotations

from typing import Any

from database.uow import UnitOfWork

Item = dict[str, Any]


def load(uow: UnitOfWork, env: str) -> tuple[list[Item], list[Item]]:
    """Every flag item and every segment item of the environment (a flag's prerequisites and
    its rules' segments may be any of them)."""
    with uow:
        return (
            [f.snapshot() for f in uow.flags.in_environment(env)],
            [s.snapshot() for s in uow.segments.in_environment(env)],
        )
