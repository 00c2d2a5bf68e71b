"""Targeting on the server (issue 10): request and response bodies of rules, variants,
prerequisites and segments (`schemas`), and the mapping of Unleash's documents (`unleash`).

The semantics live once, in the SDK's `aurora_client.targeting`; this package may import it,
`service.schemas` and `database.models`, never the routers.
"""
