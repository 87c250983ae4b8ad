"""studies: many campaigns (one per prompt) under shared settings and one recruitment link;
campaigns.study_id and study_position (the campaign's prompt in its study), annotators.study_id
(a study's worker) with one annotator per participant and study

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("recruit", sa.Boolean(), nullable=False),
        sa.Column("recruit_cap", sa.Integer(), nullable=False),
        sa.Column("tasks_per_worker", sa.Integer(), nullable=False),
        sa.Column("completion_code", sa.String(32), nullable=False),
        sa.Column("completion_url", sa.Text(), nullable=True),
        sa.Column("pay_per_hour", sa.Float(), nullable=True),
        sa.Column("owner_key_id", sa.Integer(), sa.ForeignKey("owner_keys.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index(op.f("ix_studies_status"), "studies", ["status"], unique=False)
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("study_id", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("study_position", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_campaigns_study_id", "studies", ["study_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_campaigns_study_id"), ["study_id"], unique=False)
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.add_column(sa.Column("study_id", sa.String(32), nullable=True))
        batch_op.create_foreign_key("fk_annotators_study_id", "studies", ["study_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_annotators_study_id"), ["study_id"], unique=False)
        batch_op.create_unique_constraint(
            "uq_annotator_study_participant", ["study_id", "participant_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("annotators") as batch_op:
        batch_op.drop_constraint("uq_annotator_study_participant", type_="unique")
        batch_op.drop_index(batch_op.f("ix_annotators_study_id"))
        batch_op.drop_constraint("fk_annotators_study_id", type_="foreignkey")
        batch_op.drop_column("study_id")
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_study_id"))
        batch_op.drop_constraint("fk_campaigns_study_id", type_="foreignkey")
        batch_op.drop_column("study_position")
        batch_op.drop_column("study_id")
    op.drop_index(op.f("ix_studies_status"), table_name="studies")
    op.drop_table("studies")
