"""Periodic jobs (#16): the scheduled backup's lease and when it last ran.

Revision ID: 0016b
Revises: 0015v
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0016b'
down_revision: str | None = '0015v'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    jobs = op.create_table('periodic_jobs',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=True),
    sa.Column('held_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_periodic_jobs'))
    )
    # The row exists from the start: processes only ever UPDATE it to take the lease, so two
    # that start at once cannot both insert it.
    op.bulk_insert(jobs, [{'name': 'backup'}])


def downgrade() -> None:
    op.drop_table('periodic_jobs')
