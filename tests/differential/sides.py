"""The two sides of the differential test, each answering (enabled, variant) for a flag and a
context, and the comparison of their answers (with a greedy minimizer for a disagreement)."""

from __future__ import annotations

import copy
import json
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aurora_client.targeting import Context, Flag, Segment, evaluate

from service.targeting.unleash import convert
from tests.differential.generator import Document, UnleashContext, random_dependent
from tests.differential.oracle import Unleash, frozen_clock

Answer = tuple[bool, dict[str, Any]]


class Ours:
    """The document imported as `POST /import/unleash` does (convert), then compiled and
    evaluated by the one evaluation module the server and the SDK share."""

    def __init__(self, document: Document) -> None:
        conversion = convert(document)
        self.segments = {s["name"]: Segment.of({**s, "version": 1}) for s in conversion.segments}
        self.flags = {f["flag_key"]: Flag.of({**f, "version": 1}) for f in conversion.flags}

    def answer(self, name: str, context: UnleashContext) -> Answer:
        result = evaluate(self.flags[name], Context.of(context), self.flags, self.segments)
        return result.enabled, result.variant.to_dict()


def unleash_answer(unleash: Unleash, name: str, context: UnleashContext) -> Answer:
    return unleash.is_enabled(name, context), unleash.get_variant(name, context)


def _ours_or_error(ours: Ours | str, name: str, context: UnleashContext) -> Answer | str:
    if isinstance(ours, str):
        return ours
    try:
        return ours.answer(name, context)
    except Exception:
        return "error: " + traceback.format_exc(limit=4)


def build_ours(document: Document) -> Ours | str:
    """Our side, or the error the import or compilation raised (itself a disagreement)."""
    try:
        return Ours(document)
    except Exception:
        return "error: " + traceback.format_exc(limit=4)


def differs(theirs: Answer, ours: Answer | str, *, variant_is_random: bool) -> bool:
    if isinstance(ours, str):
        return True
    if theirs[0] != ours[0]:
        return True
    if variant_is_random:
        # Which variant is a random draw in Unleash; whether the feature is on is not.
        return theirs[1].get("feature_enabled") != ours[1].get("feature_enabled")
    return theirs[1] != ours[1]


@dataclass
class Disagreement:
    seed: int
    flag: str
    document: Document
    context: UnleashContext
    unleash: Answer
    ours: Answer | str
    variant_is_random: bool
    now: datetime  # the time of the call both sides read (generator.clock)

    def report(self) -> str:
        return (
            f"seed {self.seed}: flag {self.flag!r}\n"
            f"  context:  {json.dumps(self.context, ensure_ascii=False)}\n"
            f"  now:      {self.now.isoformat()} (a missing currentTime)\n"
            f"  unleash:  {_show(self.unleash)}\n"
            f"  ours:     {_show(self.ours)}\n"
            f"  variant compared: {not self.variant_is_random}\n"
            f"  document: {json.dumps(self.document, ensure_ascii=False)}\n"
            f"  rerun: AURORA_DIFF_SEED={self.seed} pytest tests/differential"
        )


def _show(answer: Answer | str) -> str:
    if isinstance(answer, str):
        return answer
    return f"enabled={answer[0]} variant={json.dumps(answer[1], ensure_ascii=False)}"


def check(
    document: Document, name: str, context: UnleashContext, now: datetime
) -> Disagreement | None:
    """Both sides on one case, from scratch, at the instant `now` (the minimizer's probe)."""
    enabled_random, variant_random = random_dependent(document, name, context)
    if enabled_random:
        return None
    with frozen_clock(now):
        theirs = unleash_answer(Unleash(document), name, context)
        ours = _ours_or_error(build_ours(document), name, context)
    if differs(theirs, ours, variant_is_random=variant_random):
        return Disagreement(0, name, document, context, theirs, ours, variant_random, now)
    return None


def _weighable(document: Document) -> bool:
    """Every variant list has a positive total weight (UnleashClient's engine panics on 0)."""
    lists = [f.get("variants") or [] for f in document["features"]]
    lists += [
        s.get("variants") or [] for f in document["features"] for s in f.get("strategies") or []
    ]
    return all(sum(v.get("weight", 0) for v in variants) > 0 for variants in lists if variants)


def _candidates(document: Document, name: str) -> Iterator[Document]:
    return (d for d in _all_candidates(document, name) if _weighable(d))


def _all_candidates(document: Document, name: str) -> Iterator[Document]:
    """Smaller documents: one feature, strategy, constraint, segment, variant, override,
    dependency or parameter less (each probed; the first that still disagrees is kept)."""
    features = document["features"]
    for i, feature in enumerate(features):
        if feature["name"] != name:
            yield {**document, "features": features[:i] + features[i + 1 :]}
    for i, segment in enumerate(document.get("segments") or []):
        yield {**document, "segments": document["segments"][:i] + document["segments"][i + 1 :]}
        for j in range(len(segment.get("constraints") or [])):
            doc = copy.deepcopy(document)
            del doc["segments"][i]["constraints"][j]
            yield doc
    for fi, feature in enumerate(features):
        for key in ("strategies", "variants", "dependencies"):
            for i in range(len(feature.get(key) or [])):
                doc = copy.deepcopy(document)
                del doc["features"][fi][key][i]
                yield doc
        for si, strategy in enumerate(feature.get("strategies") or []):
            for key in ("constraints", "segments", "variants"):
                for i in range(len(strategy.get(key) or [])):
                    doc = copy.deepcopy(document)
                    del doc["features"][fi]["strategies"][si][key][i]
                    yield doc
            for param in strategy.get("parameters") or {}:
                doc = copy.deepcopy(document)
                del doc["features"][fi]["strategies"][si]["parameters"][param]
                yield doc
        for vi, variant in enumerate(feature.get("variants") or []):
            for key in ("overrides", "payload", "stickiness"):
                if key in variant:
                    doc = copy.deepcopy(document)
                    del doc["features"][fi]["variants"][vi][key]
                    yield doc


def _smaller_contexts(context: UnleashContext) -> Iterator[UnleashContext]:
    for key in context:
        yield {k: v for k, v in context.items() if k != key}
    for key in context.get("properties") or {}:
        props = {k: v for k, v in context["properties"].items() if k != key}
        yield {**context, "properties": props}


def minimize(found: Disagreement, budget: int = 400) -> Disagreement:
    """Greedy: drop parts of the document and the context while the disagreement stays."""
    current = found
    probes = 0

    def first(options: Iterator[tuple[Document, UnleashContext]]) -> Disagreement | None:
        nonlocal probes
        for document, context in options:
            probes += 1
            if probes > budget:
                return None
            smaller = check(document, current.flag, context, current.now)
            if smaller is not None:
                return smaller
        return None

    while probes <= budget:
        step = first((d, current.context) for d in _candidates(current.document, current.flag))
        step = step or first((current.document, c) for c in _smaller_contexts(current.context))
        if step is None:
            break
        step.seed = found.seed
        current = step
    return current
