"""Web chat (#13): visitors' uploads (which visitor sent which of core's attachments) and each
tenant's widget words (the offline notice and a greeting, by language).

Revision ID: 0013c
Revises: 0011s
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0013c'
down_revision: str | None = "0011s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webchat_uploads',
    sa.Column('attachment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('visitor_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'], name=op.f('fk_webchat_uploads_attachment_id_attachments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webchat_uploads_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('attachment_id', name=op.f('pk_webchat_uploads'))
    )
    with op.batch_alter_table('webchat_uploads', schema=None) as batch_op:
        batch_op.create_index('ix_webchat_uploads_visitor', ['tenant_id', 'visitor_id', 'created_at'], unique=False)

    op.create_table('webchat_settings',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('offline_message', sa.JSON(), nullable=False),
    sa.Column('welcome', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webchat_settings_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_webchat_settings'))
    )


def downgrade() -> None:
    op.drop_table('webchat_settings')
    with op.batch_alter_table('webchat_uploads', schema=None) as batch_op:
        batch_op.drop_index('ix_webchat_uploads_visitor')
    op.drop_table('webchat_uploads')
