"""verdicts: what a run's curves and diagnostics say, kept with the run; a retried run links the run it retries

Revision ID: 0005_verdicts_retries
Revises: 0004_child_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_verdicts_retries"
down_revision = "0004_child_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("verdicts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("retry_of", sa.String(length=40), nullable=True))
        batch.create_foreign_key("fk_runs_retry_of", "runs", ["retry_of"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("fk_runs_retry_of", type_="foreignkey")
        batch.drop_column("retry_of")
        batch.drop_column("verdicts")
