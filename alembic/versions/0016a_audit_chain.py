"""Audit and login logs (#16): the audit log's hash chain (prev_hash, hash, the chains' heads, the
existing rows' hashes backfilled in id order), and triggers that make audit_log and login_log
append-only in the database itself.

Revision ID: 0016a
Revises: 0016p
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from core import auditchain

revision: str = '0016a'
down_revision: str | None = '0016p'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A row may go only with its tenant: while the tenant is being purged, or once its row is gone
# (the ON DELETE CASCADE from tenants). The operator's rows (no tenant) never go.
_TENANT_STAYS = "EXISTS (SELECT 1 FROM tenants WHERE tenants.id = OLD.tenant_id AND tenants.status <> 'purging')"

SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        WHEN OLD.tenant_id IS NULL OR {_TENANT_STAYS}
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END""",
    # The one update allowed: the agents' ON DELETE SET NULL, which only happens when the tenant goes.
    f"""CREATE TRIGGER login_log_no_update BEFORE UPDATE ON login_log
        WHEN NOT (NEW.agent_id IS NULL AND NEW.id IS OLD.id AND NEW.tenant_id IS OLD.tenant_id
                  AND NEW.email IS OLD.email AND NEW.ip IS OLD.ip AND NEW.user_agent IS OLD.user_agent
                  AND NEW.outcome IS OLD.outcome AND NEW.created_at IS OLD.created_at
                  AND NOT {_TENANT_STAYS})
        BEGIN SELECT RAISE(ABORT, 'login_log is append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER login_log_no_delete BEFORE DELETE ON login_log
        WHEN {_TENANT_STAYS}
        BEGIN SELECT RAISE(ABORT, 'login_log is append-only: DELETE refused'); END""",
)

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION channelhub_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
    END IF;
    IF OLD.tenant_id IS NOT NULL AND NOT {_TENANT_STAYS} THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        -- The agents' ON DELETE SET NULL, which only happens when the tenant goes.
        IF TG_TABLE_NAME = 'login_log' THEN
            IF NEW.agent_id IS NULL AND (to_jsonb(NEW) - 'agent_id') = (to_jsonb(OLD) - 'agent_id') THEN
                RETURN NEW;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$"""

PG_TRIGGERS = tuple(
    stmt for table in ("audit_log", "login_log") for stmt in (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION channelhub_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION channelhub_append_only()",
    )
)


def _backfill() -> None:
    """Hash the rows written before the chain existed, chain by chain in id order."""
    bind = op.get_bind()
    log = sa.table('audit_log', sa.column('id', sa.BigInteger()), sa.column('tenant_id', sa.Integer()),
                   sa.column('actor_type', sa.String()), sa.column('actor_id', sa.Integer()),
                   sa.column('action', sa.String()), sa.column('target_type', sa.String()),
                   sa.column('target_id', sa.String()), sa.column('details', sa.JSON()),
                   sa.column('ip', sa.String()), sa.column('created_at', sa.DateTime(timezone=True)),
                   sa.column('prev_hash', sa.String()), sa.column('hash', sa.String()))
    heads = sa.table('audit_heads', sa.column('chain', sa.Integer()), sa.column('tenant_id', sa.Integer()),
                     sa.column('last_id', sa.BigInteger()), sa.column('last_hash', sa.String()))
    last: dict[int, tuple[int | None, int, str]] = {}
    after = 0
    while True:
        rows = bind.execute(sa.select(log).where(log.c.id > after).order_by(log.c.id).limit(1000)).all()
        if not rows:
            break
        for r in rows:
            key = auditchain.chain_key(r.tenant_id)
            prev = last[key][2] if key in last else auditchain.GENESIS
            digest = auditchain.row_hash(prev_hash=prev, tenant_id=r.tenant_id, actor_type=r.actor_type,
                                         actor_id=r.actor_id, action=r.action, target_type=r.target_type,
                                         target_id=r.target_id, details=r.details, ip=r.ip,
                                         created_at=r.created_at)
            bind.execute(log.update().where(log.c.id == r.id).values(prev_hash=prev, hash=digest))
            last[key] = (r.tenant_id, r.id, digest)
        after = rows[-1].id
    for key, (tenant_id, last_id, digest) in last.items():
        bind.execute(heads.insert().values(chain=key, tenant_id=tenant_id, last_id=last_id, last_hash=digest))


def upgrade() -> None:
    op.create_table('audit_heads',
    sa.Column('chain', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_heads_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_heads'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_audit_log_tenant_id_id', ['tenant_id', 'id'], unique=False)
    _backfill()
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for stmt in PG_TRIGGERS:
            op.execute(stmt)
    else:
        for stmt in SQLITE_TRIGGERS:
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("audit_log", "login_log"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS channelhub_append_only()")
    else:
        for name in ("audit_log_no_update", "audit_log_no_delete", "login_log_no_update", "login_log_no_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_tenant_id_id')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
    op.drop_table('audit_heads')
