"""Alembic, driven from `moderation db ...` so nobody needs an alembic.ini: the schema exists only through
the migrations in migrations/versions/."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from moderation.storage.database import database_url as normalized_url

# moderation/migrations is the top-level migrations/ folder (a link in the checkout, a copy in the wheel),
# so an installed package and a checkout run the same migrations.
MIGRATIONS_DIR = Path(str(files("moderation.migrations")))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be doubled for configparser; the URL travels in attributes so a password never hits a log.
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    engine = create_engine(normalized_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
