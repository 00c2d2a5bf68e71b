"""Aurora Config.

python -m service                    serve the API (HOST:PORT)
python -m service migrate            apply the schema to DATABASE_URL
python -m service tokens create NAME --scope admin [--scope read:staging ...]
python -m service tokens list
python -m service tokens revoke NAME
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time

import uvicorn
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cache.tokens import TokenNotices
from database.engine import create_database, make_engine, make_sessions
from database.migrations import upgrade_to_head
from database.uow import SqlUnitOfWork
from service.app import create_app
from service.errors import AuroraError
from service.logs import configure_logging
from service.principal import CLI_ACTOR, parse_scopes
from service.runtime import redis_clients
from service.settings import Settings
from service.usecases import tokens

log = logging.getLogger("service")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    migrate = commands.add_parser("migrate", help="apply the schema to DATABASE_URL")
    migrate.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep trying to connect this long (a database still starting)",
    )
    migrate.add_argument(
        "--create-database",
        action="store_true",
        help="create the database named in DATABASE_URL if it is missing",
    )
    token = commands.add_parser("tokens", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("name")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        dest="scopes",
        help="admin, read, read:<env>, write:<env> or evaluate:<env>; repeatable",
    )
    token.add_parser("list", help="list tokens (never their secrets)")
    revoke = token.add_parser("revoke", help="revoke a token")
    revoke.add_argument("name")
    return parser


def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    uow = SqlUnitOfWork(make_sessions(engine))
    try:
        if settings.embedded:
            upgrade_to_head(engine)
        if args.action == "create":
            scopes = parse_scopes(args.scopes, settings.environments)
            issued = tokens.create(uow, name=args.name, scopes=scopes, actor=CLI_ACTOR)
            print(issued.secret)
            log.info("created token %r with scopes %s", args.name, ",".join(sorted(scopes)))
        elif args.action == "list":
            for token in tokens.list_all(uow):
                state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
                print(f"{token.name}\t{','.join(token.scopes)}\t{state}")
        else:
            token = tokens.revoke(uow, args.name)
            log.info("revoked token %r", args.name)
            asyncio.run(_push_revocation(settings, token.token_hash))
    except AuroraError as exc:
        log.error("%s", exc.detail)
        return 1
    finally:
        engine.dispose()
    return 0


async def _push_revocation(settings: Settings, token_hash: str) -> None:
    """Tell the running instances through Redis (cache/tokens.py), so they refuse the token at
    once rather than at their next reload (within AURORA_TOKEN_CACHE_SECONDS)."""
    if settings.redis_url is None:
        return  # embedded: no other instance to tell
    redis, subscriber, helpers = redis_clients(settings, "cli")
    try:
        await TokenNotices(redis, settings.redis_prefix).publish_revoked(token_hash)
    except (RedisError, OSError) as exc:
        log.warning(
            "not pushed through Redis (%s): instances refuse the token within "
            "AURORA_TOKEN_CACHE_SECONDS",
            exc,
        )
    finally:
        for client in (redis, subscriber, *helpers):
            await client.aclose()


def migrate(url: str, *, wait: float, create: bool) -> int:
    """Apply the migrations; optionally wait for the server and create the database first."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if create:
                create_database(url)
            engine = make_engine(url)
            try:
                upgrade_to_head(engine)
            finally:
                engine.dispose()
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                log.error("cannot migrate %s: %s", make_url(url).render_as_string(), exc.orig)
                return 1
            log.info("database not reachable yet (%s); retrying", exc.orig)
            time.sleep(1)
            continue
        log.info("schema is at the latest migration")
        return 0


def _http_protocol(max_header_bytes: int) -> type[asyncio.Protocol] | str:
    """httptools with the same request-head limit h11 enforces; h11 if httptools is missing."""
    try:
        from service.http import bounded_httptools  # noqa: PLC0415 (imports httptools)
    except ImportError:
        return "h11"
    return bounded_httptools(max_header_bytes)


#: The garbage collector's young-generation threshold (CPython's default is 700). Every SSE stream
#: keeps ~300 tracked objects alive, and fan-out allocates short-lived ones per event and
#: subscriber; at 700 they were promoted before they died, which triggered a full collection
#: about once a second, each a pause of ~200 ms with 1,000 open streams (the write -> SSE p99
#: went from ~245 ms to ~50 ms with this; bench/RESULTS.md). The cost is a few MB more garbage
#: at most between young collections.
GC_YOUNG_THRESHOLD = 10_000


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    if args.command == "tokens":
        return _tokens(args, settings)
    if args.command == "migrate":
        return migrate(settings.database_url, wait=args.wait, create=args.create_database)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # uvloop and httptools (runtime dependencies) when installed: ~3x the requests per
        # second of asyncio and h11 on the same endpoint (bench/RESULTS.md).
        loop="auto",
        http=_http_protocol(settings.max_header_bytes),
        log_config=None,  # ours (service/logs.py)
        access_log=False,  # one structured line per request comes from service/logs.py
        server_header=False,  # no "server: uvicorn": nothing to learn about the stack
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # when h11 is the fallback
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
