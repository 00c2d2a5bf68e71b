"""Aurora Config client SDK.

    from aurora_client import AuroraClient

    with AuroraClient("http://config:8004", "production", "checkout") as aurora:
        aurora.wait_until_ready(5)
        if aurora.is_enabled("new_dashboard", user_id="123"):
            ...
        limit = aurora.get("database.max_connections", 10)

The state types and the rollout evaluation here are the single implementation shared by the
server and every client: a flag evaluates the same everywhere because it is the same code.
"""

from aurora_client._cache import Change
from aurora_client._client import AuroraClient, Status
from aurora_client.evaluation import Evaluation, Reason, bucket_of, evaluate
from aurora_client.state import ConfigState, FlagState, JsonValue, Scope, resolve_value

__all__ = [
    "AuroraClient",
    "Change",
    "ConfigState",
    "Evaluation",
    "FlagState",
    "JsonValue",
    "Reason",
    "Scope",
    "Status",
    "bucket_of",
    "evaluate",
    "resolve_value",
]
