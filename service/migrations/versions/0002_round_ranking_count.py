"""rounds.n_rankings: rankings counted on the round, bumped with each stored ranking

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.add_column(
            sa.Column("n_rankings", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE rounds SET n_rankings = "
        "(SELECT count(*) FROM rankings WHERE rankings.round_id = rounds.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.drop_column("n_rankings")
