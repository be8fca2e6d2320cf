"""artifact kinds are paths in the run folder (a k-fold run's fold_100/target_preprocessing.safetensors)

Revision ID: 0003_artifact_paths
Revises: 0002_tenants_keys_leases
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_artifact_paths"
down_revision = "0002_tenants_keys_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=40), type_=sa.String(length=300))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=300), type_=sa.String(length=40))
