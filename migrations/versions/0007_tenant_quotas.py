"""tenant quotas: a tenant's own limits on running and queued runs (the settings are the defaults)

Revision ID: 0007_tenant_quotas
Revises: 0006_workers
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_tenant_quotas"
down_revision = "0006_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("running", sa.Integer(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )


def downgrade() -> None:
    op.drop_table("tenant_quotas")
