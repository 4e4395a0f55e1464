"""console indexes: the message log pages by id under any filter

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_status")
        batch_op.create_index("ix_messages_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_messages_platform_id", ["platform", "id"], unique=False)
        batch_op.create_index(
            "ix_messages_conversation_id", ["conversation_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_messages_received", ["received_at", "conversation_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_received")
        batch_op.drop_index("ix_messages_conversation_id")
        batch_op.drop_index("ix_messages_platform_id")
        batch_op.drop_index("ix_messages_status_id")
        batch_op.create_index("ix_messages_status", ["status"], unique=False)
