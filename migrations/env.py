"""Alembic environment: the URL comes from `moderation db` (config attributes) or $MODERATION_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from moderation.endpoints import Endpoints
from moderation.storage.database import database_url
from moderation.storage.models import Base

config = context.config
url = database_url(config.attributes.get("database_url") or Endpoints.from_env().database_url)


def run_migrations_online() -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=url.render_as_string(hide_password=False), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
