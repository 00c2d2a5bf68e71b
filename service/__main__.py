"""`python -m service` serves the API; `python -m service migrate` applies the schema."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from database.engine import make_engine
from database.migrations import upgrade_to_head
from service.app import create_app
from service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "migrate":
        engine = make_engine(settings.database_url)
        try:
            upgrade_to_head(engine)
        finally:
            engine.dispose()
        logging.getLogger("service").info("schema is at the latest migration")
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
