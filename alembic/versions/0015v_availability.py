"""Availability (#15): the operator's maintenance windows and the closed months (figures, compensation).

Revision ID: 0015v
Revises: 0015d
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0015v'
down_revision: str | None = '0015d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('availability_months',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('availability_milli', sa.Integer(), nullable=True),
    sa.Column('measured_availability_milli', sa.Integer(), nullable=True),
    sa.Column('downtime_seconds', sa.Integer(), nullable=False),
    sa.Column('unknown_seconds', sa.Integer(), nullable=False),
    sa.Column('compensated_minutes', sa.Integer(), nullable=False),
    sa.Column('ledger_entry_id', sa.BigInteger(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_availability_months_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'month', name=op.f('pk_availability_months'))
    )
    op.create_table('maintenance_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_maintenance_windows_ends_after_start')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_maintenance_windows_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_windows'))
    )
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_windows_ends_at', ['ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_maintenance_windows_tenant_id'), ['tenant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_windows_tenant_id'))
        batch_op.drop_index('ix_maintenance_windows_ends_at')

    op.drop_table('maintenance_windows')
    op.drop_table('availability_months')
