"""Aurora Config HTTP service: FastAPI routers, use cases, settings and error mapping."""
