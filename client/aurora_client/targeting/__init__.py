"""Targeting: rules on a caller's context, segments, variants and prerequisites.

The one evaluation module of flags with targeting, shared by the server and the SDK (STYLE §5).
Pure: stdlib, mmh3 and google-re2; no I/O. What lives where:

- context: the caller's context (`Context.of` reads the JSON shape of docs/TARGETING.md)
- operators: constraints, parsed once and checked per call
- rules, segments, variants, prerequisites: the parts of a flag
- flags: `Flag.of` compiles a flag item; `evaluate` and `is_enabled` answer for a context
- explain: the per-rule and per-constraint account of an evaluation
- validation: the strict checks of a native write, and the defaults it fills

Semantics are Unleash's (its client specification runs in the test suite); docs/TARGETING.md
describes the format and every rule.
"""

from aurora_client.targeting.context import Context
from aurora_client.targeting.explain import explain
from aurora_client.targeting.flags import Flag, Reason, Result, evaluate, is_enabled
from aurora_client.targeting.segments import Segment
from aurora_client.targeting.validation import (
    Limits,
    Problem,
    normalize_rules,
    normalize_variants,
    validate_segment,
    validate_targeting,
)
from aurora_client.targeting.variants import Variant

__all__ = [
    "Context",
    "Flag",
    "Limits",
    "Problem",
    "Reason",
    "Result",
    "Segment",
    "Variant",
    "evaluate",
    "explain",
    "is_enabled",
    "normalize_rules",
    "normalize_variants",
    "validate_segment",
    "validate_targeting",
]
