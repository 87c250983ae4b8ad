"""rounds.quorum, rounds.close_reason, rounds.straggler_at: the adaptive quorum's rankings a round
waits for now (NULL: its campaign's annotators_per_round, a fixed quorum), why the round closed
(settled, cap, deadline, straggler), and when its last slot was offered to one more annotator

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.add_column(sa.Column("quorum", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("close_reason", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("straggler_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.drop_column("straggler_at")
        batch_op.drop_column("close_reason")
        batch_op.drop_column("quorum")
