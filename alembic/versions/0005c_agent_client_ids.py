"""agent client ids

Revision ID: 0005c
Revises: 0004a
Create Date: 2026-12-01 15:50:00

An agent's reply, note or hand-made ticket carries the client's id for the action, unique per
(tenant, agent), so a retry returns the first message instead of storing a second (issue #9,
defect 6). Adds one nullable column and one unique constraint to messages; existing rows keep
NULL, which never collides.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005c'
down_revision: str | None = '0004a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_id', sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_messages_tenant_id_author_agent_id_client_id'),
                                          ['tenant_id', 'author_agent_id', 'client_id'])


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_messages_tenant_id_author_agent_id_client_id'), type_='unique')
        batch_op.drop_column('client_id')
