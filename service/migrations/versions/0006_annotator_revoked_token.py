"""annotators.revoked_token_hash: the hash of the token an owner revoked, so that the revoked
token is told apart from one nobody ever held (401 ``token_revoked``, not ``unauthorized``)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.add_column(sa.Column("revoked_token_hash", sa.String(64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_annotators_revoked_token_hash"), ["revoked_token_hash"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotators_revoked_token_hash"))
        batch_op.drop_column("revoked_token_hash")
