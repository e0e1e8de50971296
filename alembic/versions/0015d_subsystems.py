"""Graceful degradation (#15): the subsystems (billing, statistics, reports) with the operator's
switch and the circuit breaker's state, and the history of every change (core.breakers).

Revision ID: 0015d
Revises: 0014p
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0015d'
down_revision: str | None = '0014p'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('subsystem_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('subsystem', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=False),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('actor_type', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subsystem_history'))
    )
    with op.batch_alter_table('subsystem_history', schema=None) as batch_op:
        batch_op.create_index('ix_subsystem_history_subsystem_id', ['subsystem', 'id'], unique=False)

    op.create_table('subsystems',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('switched_by', sa.Integer(), nullable=True),
    sa.Column('switch_reason', sa.String(length=500), nullable=True),
    sa.Column('switched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_trial_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cooldown', sa.Double(), nullable=False),
    sa.Column('trial_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_subsystems'))
    )
    # The subsystems known now, switched on and closed; core.breakers makes the row of a later one
    # when it first changes.
    subsystems = sa.table('subsystems', sa.column('name', sa.String), sa.column('enabled', sa.Boolean),
                          sa.column('state', sa.String), sa.column('failures', sa.Integer),
                          sa.column('cooldown', sa.Double))
    op.bulk_insert(subsystems, [{'name': n, 'enabled': True, 'state': 'closed', 'failures': 0, 'cooldown': 0.0}
                                for n in ('billing', 'statistics', 'reports')])


def downgrade() -> None:
    op.drop_table('subsystems')
    with op.batch_alter_table('subsystem_history', schema=None) as batch_op:
        batch_op.drop_index('ix_subsystem_history_subsystem_id')

    op.drop_table('subsystem_history')
