"""annotators.participant_context: the crowd platform's study, session, assignment and HIT ids
kept with a recruited participant; assignments.shown_at: when the page showed the task's images
(its lease was extended by their loading time, once)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.add_column(sa.Column("participant_context", sa.JSON(), nullable=True))
    with op.batch_alter_table("assignments") as batch_op:
        batch_op.add_column(sa.Column("shown_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch_op:
        batch_op.drop_column("shown_at")
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.drop_column("participant_context")
