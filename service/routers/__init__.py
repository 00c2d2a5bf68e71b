"""HTTP routers: parse input, call one use case, shape the output.

Each router carries its full path prefix (not a prefix added at include time), so the matched
route's template is the whole path: it labels metrics and logs.
"""

API_PREFIX = "/api/v1"
