"""Unleash's client specification through the evaluation module: every case of files 01-18, 21
and 22 (tests/unleash_spec.py), imported with service.targeting.unleash.convert and evaluated
with aurora_client.targeting. Every `tests` entry's expectedResult must equal `enabled`, and
every `variantTests` entry's expectedResult must deep-equal the variant's to_dict()
(feature_enabled included): 223 + 52 = 275 cases. tests/e2e/test_conformance.py runs the same
cases through the HTTP API and the SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aurora_client.targeting import Context, Flag, Segment, evaluate, is_enabled

from service.targeting.unleash import convert
from tests.unleash_spec import FILES, MISSING_FLAG_VARIANT, load, spec_dir


@pytest.fixture(scope="session")
def specs(request: pytest.FixtureRequest) -> Path:
    return spec_dir(Path(str(request.config.rootpath)))


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
def test_specification_file(specs: Path, name: str) -> None:
    spec = load(specs, name)
    _, failures = _run(spec)
    assert failures == []


def test_all_275_cases_pass(specs: Path) -> None:
    toggles = variants = passed = 0
    for name in FILES:
        spec = load(specs, name)
        toggles += len(spec.get("tests", []))
        variants += len(spec.get("variantTests", []))
        passed += _run(spec)[0]
    assert (toggles, variants, passed) == (223, 52, 275)
