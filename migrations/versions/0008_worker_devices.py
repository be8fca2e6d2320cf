"""worker devices: what each worker can train (device count, device kind, bfloat16), for routing
runs by their resources.devices and refusing at submit what no live worker can do

Revision ID: 0008_worker_devices
Revises: 0007_tenant_quotas
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_worker_devices"
down_revision = "0007_tenant_quotas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as table:
        table.add_column(sa.Column("devices", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("device_kind", sa.String(length=16), nullable=False, server_default="cpu"))
        table.add_column(sa.Column("bf16", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("workers") as table:
        table.drop_column("bf16")
        table.drop_column("device_kind")
        table.drop_column("devices")
