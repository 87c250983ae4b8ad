"""Image-set campaigns: a round's own prompt and item id (an imported item), and each image's
model (exports fill model_0/model_1 from it)

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.add_column(sa.Column("prompt", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("item_id", sa.String(200), nullable=True))
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("model")
    with op.batch_alter_table("rounds") as batch_op:
        batch_op.drop_column("item_id")
        batch_op.drop_column("prompt")
