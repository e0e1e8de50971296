"""Reports (#17): the rollups of the metrics at several grains (core.rollups; WITHOUT ROWID on
SQLite: the key is the table) and each tenant's cursor on the events (a ticket's
history in order is read through 0017s's index on events (ticket_id, id)).

Revision ID: 0017r
Revises: 0017s
Create Date: 2026-12-07 23:05:21.703649
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017r'
down_revision: str | None = '0017s'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_cursors',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('last_event_id', sa.BigInteger(), nullable=False),
    sa.Column('clock', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_report_cursors_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_report_cursors'))
    )
    op.create_table('report_rollups',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('grain', sa.SmallInteger(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('received', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('assigned', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('solved', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('transferred', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reopened', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('first_response_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('first_response_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('first_response_bms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('next_response_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('next_response_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('next_response_bms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resolution_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resolution_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resolution_bms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('handle_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('handle_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('new_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('open_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pending_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('solved_ms', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('csat_1', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('csat_2', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('csat_3', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('csat_4', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('csat_5', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('sla_first_response', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('sla_next_response', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('sla_resolution', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h00', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h01', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h02', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h03', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h04', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h05', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h06', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h07', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h08', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h09', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h10', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h11', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h12', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h13', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h14', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h15', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h16', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h17', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h18', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h19', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h20', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h21', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h22', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('h23', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_report_rollups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'grain', 'tag', 'channel', 'group_id', 'agent_id', 'day',
                            name=op.f('pk_report_rollups')),
    sqlite_with_rowid=False,
    )



def downgrade() -> None:
    op.drop_table('report_rollups')
    op.drop_table('report_cursors')
