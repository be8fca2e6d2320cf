"""child runs: a sweep's trials and a k-fold run's folds have a parent, a trial number and parameters;
a sweep keeps the document it was submitted as

Revision ID: 0004_child_runs
Revises: 0003_artifact_paths
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_child_runs"
down_revision = "0003_artifact_paths"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="run"))
        batch.add_column(sa.Column("parent_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("trial", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("document", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_runs_parent_id", "runs", ["parent_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_runs_parent_trial", ["parent_id", "trial"], unique=True)
        batch.create_index("ix_runs_kind", ["kind"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_kind")
        batch.drop_index("ix_runs_parent_trial")
        batch.drop_constraint("fk_runs_parent_id", type_="foreignkey")
        for column in ("document", "params", "trial", "parent_id", "kind"):
            batch.drop_column(column)
