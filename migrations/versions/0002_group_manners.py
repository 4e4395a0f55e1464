"""group manners: held replies, reply kinds, follow-up ids, paused groups, feedback sources

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("paused_by", sa.String(length=255), nullable=False, server_default="")
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reply_to", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("thread_root", sa.String(length=255), nullable=False, server_default="")
        )
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="answer")
        )
        batch_op.add_column(sa.Column("question", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_replies_platform_reply_id"), ["platform_reply_id"], unique=False
        )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="reaction")
        )
        batch_op.add_column(sa.Column("example", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_column("example")
        batch_op.drop_column("source")
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replies_platform_reply_id"))
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("not_before")
        batch_op.drop_column("question")
        batch_op.drop_column("kind")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("thread_root")
        batch_op.drop_column("reply_to")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("paused_by")
        batch_op.drop_column("paused_at")
