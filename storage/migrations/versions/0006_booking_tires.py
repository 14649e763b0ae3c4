"""tire hotel

Revision ID: 0006
Revises: 0007
Create Date: 2026-12-03 19:50:03.395949
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tire_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("car_id", sa.Integer(), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=False),
        sa.Column("brand", sa.String(length=100), nullable=True),
        sa.Column(
            "season",
            sa.Enum(
                "summer", "winter", "all_season", name="tireseason", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("with_wheels", sa.Boolean(), nullable=False),
        sa.Column("tread_tenths_mm", sa.Integer(), nullable=True),
        sa.Column("condition", sa.Text(), nullable=True),
        sa.Column("rack", sa.String(length=20), nullable=False),
        sa.Column("shelf", sa.String(length=20), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("stored", "issued", name="tiresetstate", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_issue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["staff.id"], name=op.f("fk_tire_sets_author_id_staff")
        ),
        sa.ForeignKeyConstraint(["car_id"], ["cars.id"], name=op.f("fk_tire_sets_car_id_cars")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_tire_sets_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["issued_by_id"], ["staff.id"], name=op.f("fk_tire_sets_issued_by_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tire_sets")),
    )
    with op.batch_alter_table("tire_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tire_sets_car_id"), ["car_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tire_sets_client_id"), ["client_id"], unique=False)
        batch_op.create_index("ix_tire_sets_place", ["rack", "shelf"], unique=False)
        batch_op.create_index("ix_tire_sets_state_season", ["state", "season"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tire_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_tire_sets_state_season")
        batch_op.drop_index("ix_tire_sets_place")
        batch_op.drop_index(batch_op.f("ix_tire_sets_client_id"))
        batch_op.drop_index(batch_op.f("ix_tire_sets_car_id"))

    op.drop_table("tire_sets")
