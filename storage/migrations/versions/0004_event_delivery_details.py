"""event delivery details: recipient, delivery error, provider message id, call-back time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:19:26.980675
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("delivery_error", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("call_back_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("call_back_at")
        batch_op.drop_column("provider_message_id")
        batch_op.drop_column("delivery_error")
        batch_op.drop_column("recipient")
