"""inbox

Revision ID: 0003i
Revises: 0002w
Create Date: 2026-12-01 08:40:00

The inbox: messages a web-hook channel accepted, waiting to be turned into tickets in batches.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003i'
down_revision: str | None = '0002w'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('channel_message_id', sa.String(length=255), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inbox_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox')),
    sa.UniqueConstraint('tenant_id', 'channel', 'channel_message_id', name=op.f('uq_inbox_tenant_id_channel_channel_message_id'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_state_next_attempt_id', ['state', 'next_attempt_at', 'id'], unique=False)
        batch_op.create_index('ix_inbox_sender', ['tenant_id', 'channel', 'external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_sender')
        batch_op.drop_index('ix_inbox_state_next_attempt_id')
    op.drop_table('inbox')
