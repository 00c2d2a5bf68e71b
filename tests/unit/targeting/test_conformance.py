"""Unleash's client specification (npm @unleash/client-specification 6.1.0): files 01-18, 21 and
22, imported with service.targeting.unleash.convert and evaluated with aurora_client.targeting.

Every `tests` entry's expectedResult must equal `enabled`, and every `variantTests` entry's
expectedResult must deep-equal the variant's to_dict() (feature_enabled included): 223 + 52 = 275
cases. Files 19 and 20 test Unleash's delta protocol, out of scope. The spec's files are not in
this repository: AURORA_UNLEASH_SPEC_DIR names a directory of them, else the package is fetched
once with `npm pack` into .pytest_cache.
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
from aurora_client.targeting import Context, Flag, Segment, evaluate, is_enabled

from service.targeting.unleash import convert

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


@pytest.fixture(scope="session")
def spec_dir(request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("AURORA_UNLEASH_SPEC_DIR")
    if given:
        return Path(given)
    return _fetch(Path(str(request.config.rootpath)) / ".pytest_cache" / "unleash-spec")


def _run(spec: dict[str, Any]) -> tuple[int, list[str]]:
    conversion = convert(spec["state"])
    flags = {item["flag_key"]: Flag.of(item) for item in conversion.flags}
    segments = {item["name"]: Segment.of(item) for item in conversion.segments}
    passed = 0
    failures = []
    for case in spec.get("tests", []):
        context = Context.of(case["context"])
        flag = flags.get(case["toggleName"])
        enabled = flag is not None and evaluate(flag, context, flags, segments).enabled
        fast = flag is not None and is_enabled(flag, context, flags, segments)
        if enabled == fast == case["expectedResult"]:
            passed += 1
        else:
            failures.append(f"{case['description']}: evaluate {enabled}, is_enabled {fast}")
    for case in spec.get("variantTests", []):
        context = Context.of(case["context"])
        flag = flags.get(case["toggleName"])
        variant = (
            MISSING_FLAG_VARIANT
            if flag is None
            else evaluate(flag, context, flags, segments).variant.to_dict()
        )
        if variant == case["expectedResult"]:
            passed += 1
        else:
            failures.append(f"{case['description']}: {variant} != {case['expectedResult']}")
    return passed, failures


@pytest.mark.parametrize("name", FILES)
def test_specification_file(spec_dir: Path, name: str) -> None:
    spec = json.loads((spec_dir / name).read_text(encoding="utf-8"))
    _, failures = _run(spec)
    assert failures == []


def test_all_275_cases_pass(spec_dir: Path) -> None:
    toggles = variants = passed = 0
    for name in FILES:
        spec = json.loads((spec_dir / name).read_text(encoding="utf-8"))
        toggles += len(spec.get("tests", []))
        variants += len(spec.get("variantTests", []))
        passed += _run(spec)[0]
    assert (toggles, variants, passed) == (223, 52, 275)
