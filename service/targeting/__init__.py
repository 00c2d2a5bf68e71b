"""Targeting on the server side: mapping other services' formats onto ours.

Evaluation itself lives once, in the SDK package (aurora_client.targeting); this package holds
what only the server needs, such as the import of Unleash's client features document (unleash).
It imports aurora_client.targeting and the standard library, nothing of the web layer.
"""
