"""Instances started together with migrations enabled apply them once (issue #9, item 4): the
migration takes a database lock (GET_LOCK), so the others wait, then find the schema at head.

Real processes against one fresh MariaDB database, released at the same moment; each runs
`upgrade_to_head`, what both `python -m service migrate` and AURORA_MIGRATE_ON_START run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from database.engine import make_engine
from database.migrations import (
    MigrationLockTimeout,
    alembic_config,
    head_revision,
    schema_revision,
    upgrade_to_head,
)
from tests.backends import throwaway_mariadb

pytestmark = pytest.mark.mariadb

ROOT = Path(__file__).resolve().parents[2]
INSTANCES = 4
CHILD = """
import logging, os, sys, time
from pathlib import Path
from database.engine import make_engine
from database.migrations import upgrade_to_head

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
url, go = sys.argv[1], Path(sys.argv[2])
(go.parent / f"imported-{os.getpid()}").touch()
deadline = time.monotonic() + 60
while not go.exists():  # everything imported: wait for the start signal, then race
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.005)
engine = make_engine(url)
upgrade_to_head(engine)
engine.dispose()
"""


def test_instances_migrating_at_once_all_succeed_and_apply_each_migration_once(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    revisions = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    with throwaway_mariadb("lock") as url:
        children = [
            subprocess.Popen(
                [sys.executable, str(script), url, str(go)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(INSTANCES)
        ]
        try:
            deadline = time.monotonic() + 60
            while len(list(tmp_path.glob("imported-*"))) < INSTANCES:  # all set to race
                assert time.monotonic() < deadline, "the children did not start"
                assert all(child.poll() is None for child in children), "a child died"
                time.sleep(0.01)
            go.touch()
            outcomes = [child.communicate(timeout=120) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
        errors = [
            err for (_, err), child in zip(outcomes, children, strict=True) if child.returncode
        ]
        assert errors == [], errors[0][-2000:] if errors else ""
        ran = [
            line for _, err in outcomes for line in err.splitlines() if "Running upgrade" in line
        ]
        assert len(ran) == revisions, ran  # each migration once, across all the instances
        engine = make_engine(url)
        try:
            assert schema_revision(engine).current == head_revision()
        finally:
            engine.dispose()


def test_a_migration_lock_held_too_long_is_a_clear_error_not_a_dropped_connection() -> None:
    """The wait is bounded, and outlasts the connection's read timeout (1 s here) without the
    socket giving up: the lock is polled, not waited for in one query."""
    with throwaway_mariadb("held") as url:
        holder = make_engine(url)
        waiter = make_engine(url, timeout=0.5)  # read timeout 1 s
        try:
            with holder.connect() as held:
                name = f"aurora-migrate:{held.engine.url.database}"
                assert held.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
                with pytest.raises(MigrationLockTimeout, match="migration lock"):
                    upgrade_to_head(waiter, lock_wait=2.0)
                held.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            upgrade_to_head(waiter, lock_wait=2.0)
            assert schema_revision(waiter).current == head_revision()
        finally:
            holder.dispose()
            waiter.dispose()
