"""PostgreSQL storage through SQLAlchemy 2: the schema (models.py, created only by Alembic migrations),
connections (database.py), the idempotent batch write (writes.py) and the read side (queries.py)."""
