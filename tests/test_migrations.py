"""alembic is the only way the schema is made: the migrated database matches the models exactly,
on SQLite and PostgreSQL alike (an autogenerate comparison finds nothing to do)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db import Database
from core.models import Base, autogenerate_includes


async def test_migrated_schema_matches_the_models(settings: Any) -> None:
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as conn:
            def diff(sync_conn: Any) -> list[Any]:
                # The search index's dialect-specific objects are made by hand (core.models says which).
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True,
                                                                  "include_object": autogenerate_includes})
                return list(compare_metadata(ctx, Base.metadata))

            changes = await conn.run_sync(diff)
    finally:
        await db.dispose()
    assert changes == [], f"models and migrations differ: {changes}"
