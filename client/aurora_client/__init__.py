"""Aurora Config client SDK.

The state types and the rollout evaluation here are the single implementation shared by the
server and every client: a flag evaluates the same everywhere because it is the same code.
"""

from aurora_client.evaluation import Evaluation, Reason, bucket_of, evaluate
from aurora_client.state import ConfigState, FlagState, JsonValue, Scope, resolve_value

__all__ = [
    "ConfigState",
    "Evaluation",
    "FlagState",
    "JsonValue",
    "Reason",
    "Scope",
    "bucket_of",
    "evaluate",
    "resolve_value",
]
