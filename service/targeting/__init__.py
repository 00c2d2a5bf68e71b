"""Targeting on the server side: request and response bodies of rules, variants, prerequisites
and segments (schemas), and mapping other services' formats onto ours (unleash: the import of
Unleash's client features document).

Evaluation itself lives once, in the SDK package (aurora_client.targeting). `unleash` imports it
and the standard library, nothing of the web layer; `schemas` also imports `service.schemas`
and `database.models`, never the routers.
"""
