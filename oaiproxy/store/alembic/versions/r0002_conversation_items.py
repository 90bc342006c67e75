"""OpenAI Conversations' items: a new table beside the others (nothing existing is altered, so no data can be lost).

Self-contained on purpose, as every migration here (see r0001_initial).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "conversation_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("item", JSON, nullable=False),
        sa.Column("response_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"], name="fk_conversation_items_thread_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_items"),
    )
    op.create_index("uq_conversation_items_thread_position", "conversation_items", ["thread_id", "position"],
                    unique=True)
    op.create_index("uq_conversation_items_thread_item", "conversation_items", ["thread_id", "item_id"], unique=True)


def downgrade() -> None:
    op.drop_table("conversation_items")
