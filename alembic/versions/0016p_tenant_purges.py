"""Tenant purges (#16): the deletion of a tenant's data and its durable progress (core.purge);
indexes that keep deleting customers and tickets from scanning every tenant's.

Revision ID: 0016p
Revises: 0016b
Create Date: 2026-12-07 19:09:55.488652
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016p'
down_revision: str | None = '0016b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tenant_purges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purged_tenant_id', sa.Integer(), nullable=False),
    sa.Column('tenant_name', sa.String(length=200), nullable=False),
    sa.Column('domains', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('requested_by_type', sa.String(length=20), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmation', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('table_name', sa.String(length=64), nullable=True),
    sa.Column('rows_deleted', sa.BigInteger(), nullable=False),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('passes', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_purges')),
    sa.UniqueConstraint('purged_tenant_id', name=op.f('uq_tenant_purges_purged_tenant_id'))
    )
    # Deleting a customer or a ticket looks for the ones merged into it (their foreign keys' SET
    # NULL): partial indexes, since merged rows are few.
    for table_name in ("customers", "tickets"):
        op.create_index(f"ix_{table_name}_merged_into_id", table_name, ["merged_into_id"], unique=False,
                        sqlite_where=sa.text("merged_into_id IS NOT NULL"),
                        postgresql_where=sa.text("merged_into_id IS NOT NULL"))


def downgrade() -> None:
    for table_name in ("tickets", "customers"):
        op.drop_index(f"ix_{table_name}_merged_into_id", table_name=table_name)
    op.drop_table('tenant_purges')
