"""Aurora Config client SDK.

    from aurora_client import AuroraClient, Context

    with AuroraClient("http://config:8004", "production", "checkout") as aurora:
        aurora.wait_until_ready(5)
        if aurora.is_enabled("new_dashboard", user_id="123"):
            ...
        user = Context.of({"userId": "123", "properties": {"country": "DE"}})  # build it once
        if aurora.is_enabled("checkout-v2", context=user):
            color = aurora.get_variant("checkout-v2", context=user).payload
        limit = aurora.get("database.max_connections", 10)

The state types, the rollout evaluation and the targeting rules (aurora_client.targeting) here are
the single implementation shared by the server and every client: a flag evaluates the same
everywhere because it is the same code.
"""

from aurora_client._cache import Change
from aurora_client._client import AuroraClient, Status
from aurora_client.evaluation import Evaluation, Reason, bucket_of, evaluate
from aurora_client.state import ConfigState, FlagState, JsonValue, Scope, resolve_value
from aurora_client.targeting import Context, Result, Variant

__all__ = [
    "AuroraClient",
    "Change",
    "ConfigState",
    "Context",
    "Evaluation",
    "FlagState",
    "JsonValue",
    "Reason",
    "Result",
    "Scope",
    "Status",
    "Variant",
    "bucket_of",
    "evaluate",
    "resolve_value",
]
