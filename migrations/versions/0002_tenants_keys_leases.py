"""tenants and API keys, run leases, unique metric points

Revision ID: 0002_tenants_keys_leases
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_tenants_keys_leases"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=100), nullable=False, server_default="local"))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("idempotency_key", type_=sa.String(length=300))
        batch.create_index("ix_runs_tenant", ["tenant"])
        batch.create_index("ix_runs_lease_expires_at", ["lease_expires_at"])
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=100), nullable=False, server_default="local"))
        batch.create_index("ix_datasets_tenant", ["tenant"])
    with op.batch_alter_table("metrics") as batch:
        batch.drop_index("ix_metrics_run_name_step")
        batch.create_index("ix_metrics_run_name_step", ["run_id", "name", "step"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_index("ix_metrics_run_name_step")
        batch.create_index("ix_metrics_run_name_step", ["run_id", "name", "step"])
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index("ix_datasets_tenant")
        batch.drop_column("tenant")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_lease_expires_at")
        batch.drop_index("ix_runs_tenant")
        batch.alter_column("idempotency_key", type_=sa.String(length=200))
        batch.drop_column("enqueued_at")
        batch.drop_column("lease_expires_at")
        batch.drop_column("tenant")
    op.drop_index("ix_api_keys_tenant", "api_keys")
    op.drop_table("api_keys")
