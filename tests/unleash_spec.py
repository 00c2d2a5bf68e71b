"""Unleash's client specification (npm @unleash/client-specification 6.1.0), for the conformance
tests: files 01-18, 21 and 22 (223 toggle and 52 variant tests; 19 and 20 test Unleash's delta
protocol, out of scope). The files are not in this repository: AURORA_UNLEASH_SPEC_DIR names a
directory of them, else the package is fetched once with `npm pack` into .pytest_cache (npm is on
every machine; without it the tests fail, never skip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "@unleash/client-specification@6.1.0"
FILES = [
    "01-simple-examples.json",
    "02-user-with-id-strategy.json",
    "03-gradual-rollout-user-id-strategy.json",
    "04-gradual-rollout-session-id-strategy.json",
    "05-gradual-rollout-random-strategy.json",
    "06-remote-address-strategy.json",
    "07-multiple-strategies.json",
    "08-variants.json",
    "09-strategy-constraints.json",
    "10-flexible-rollout-strategy.json",
    "11-strategy-constraints-edge-cases.json",
    "12-custom-stickiness.json",
    "13-constraint-operators.json",
    "14-constraint-semver-operators.json",
    "15-global-constraints.json",
    "16-strategy-variants.json",
    "17-dependent-features.json",
    "18-utf8-flag-names.json",
    "21-regex-constraint-operators.json",
    "22-cidr-constraint-operators.json",
]
MISSING_FLAG_VARIANT = {"name": "disabled", "enabled": False, "feature_enabled": False}


def _fetch(cache: Path) -> Path:
    """The specification directory, fetched with `npm pack` when not cached yet."""
    target = cache / "package" / "specifications"
    if (target / FILES[0]).exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to fetch the Unleash client specification")
    cache.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(
        [npm, "pack", PACKAGE, "--silent", "--pack-destination", str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    archive = cache / packed.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/specifications/")]
        tar.extractall(cache, members=members, filter="data")
    return target


def spec_dir(rootpath: Path) -> Path:
    given = os.environ.get("AURORA_UNLEASH_SPEC_DIR")
    if given:
        return Path(given)
    return _fetch(rootpath / ".pytest_cache" / "unleash-spec")


def load(directory: Path, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((directory / name).read_text(encoding="utf-8"))
    return spec
