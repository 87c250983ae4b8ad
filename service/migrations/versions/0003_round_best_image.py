"""rounds.best_key, best_thumb_key: the optimizer's current point, rendered clean each round

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.add_column(sa.Column("best_key", sa.String(300), nullable=True))
        batch_op.add_column(sa.Column("best_thumb_key", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.drop_column("best_thumb_key")
        batch_op.drop_column("best_key")
