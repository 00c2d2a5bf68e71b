"""The source of truth: SQLAlchemy 2 models, repositories and the unit of work.

Sync SQLAlchemy over pymysql (TiDB, MySQL, MariaDB) or sqlite.

Nothing here imports FastAPI or the service package; callers on the event loop reach this code
through the thread pool (see docs/ARCHITECTURE.md).
"""
