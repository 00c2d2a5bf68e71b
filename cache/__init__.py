"""The Redis read model, change feed and SSE fan-out (issue #4).

Plain asyncio and redis: nothing here imports FastAPI or the service package.
"""
