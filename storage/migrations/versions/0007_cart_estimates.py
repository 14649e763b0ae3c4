"""cart, price list, estimates

Revision ID: 0007
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "price_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("goods", "work", name="linekind", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_key", sa.String(length=300), nullable=False),
        sa.Column("catalogue_number", sa.String(length=60), nullable=True),
        sa.Column("catalogue_key", sa.String(length=60), nullable=True),
        sa.Column("maker", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("norm_hours_milli", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_items")),
    )
    with op.batch_alter_table("price_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_price_items_catalogue_key"), ["catalogue_key"], unique=False
        )

    op.create_table(
        "price_item_prices",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("price_type_id", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["price_items.id"],
            name=op.f("fk_price_item_prices_item_id_price_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["price_type_id"],
            ["price_types.id"],
            name=op.f("fk_price_item_prices_price_type_id_price_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "price_type_id", name=op.f("pk_price_item_prices")),
    )
    op.create_table(
        "estimates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("car_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "draft", "sent", "decided", name="estimatestate", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("work_order_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["staff.id"], name=op.f("fk_estimates_author_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["car_id"], ["cars.id"], name=op.f("fk_estimates_car_id_cars"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_estimates_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["documents.id"],
            name=op.f("fk_estimates_plan_id_documents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["work_order_id"],
            ["documents.id"],
            name=op.f("fk_estimates_work_order_id_documents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimates")),
    )
    with op.batch_alter_table("estimates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_estimates_client_id"), ["client_id"], unique=False)

    op.create_table(
        "cart_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("car_id", sa.Integer(), nullable=True),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("price_item_id", sa.Integer(), nullable=True),
        sa.Column("plan_line_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum("goods", "work", name="linekind", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("item", sa.String(length=300), nullable=False),
        sa.Column("catalogue_number", sa.String(length=60), nullable=True),
        sa.Column("maker", sa.String(length=100), nullable=True),
        sa.Column("qty_milli", sa.Integer(), nullable=False),
        sa.Column("norm_hours_milli", sa.Integer(), nullable=True),
        sa.Column("plan_price", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["car_id"], ["cars.id"], name=op.f("fk_cart_lines_car_id_cars"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_cart_lines_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_line_id"],
            ["document_lines.id"],
            name=op.f("fk_cart_lines_plan_line_id_document_lines"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["price_item_id"],
            ["price_items.id"],
            name=op.f("fk_cart_lines_price_item_id_price_items"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_cart_lines_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_lines")),
    )
    with op.batch_alter_table("cart_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cart_lines_client_id"), ["client_id"], unique=False)

    op.create_table(
        "estimate_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("estimate_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("goods", "work", name="linekind", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("item", sa.String(length=300), nullable=False),
        sa.Column("catalogue_number", sa.String(length=60), nullable=True),
        sa.Column("maker", sa.String(length=100), nullable=True),
        sa.Column("qty_milli", sa.Integer(), nullable=False),
        sa.Column("norm_hours_milli", sa.Integer(), nullable=True),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("discount_bp", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("plan_line_id", sa.Integer(), nullable=True),
        sa.Column(
            "decision",
            sa.Enum("approved", "declined", name="linedecision", native_enum=False, length=24),
            nullable=True,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_chat_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["estimate_id"],
            ["estimates.id"],
            name=op.f("fk_estimate_lines_estimate_id_estimates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_line_id"],
            ["document_lines.id"],
            name=op.f("fk_estimate_lines_plan_line_id_document_lines"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimate_lines")),
    )
    with op.batch_alter_table("estimate_lines", schema=None) as batch_op:
        batch_op.create_index(
            "ix_estimate_lines_version", ["estimate_id", "version", "line_no"], unique=False
        )

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("estimate_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_estimate_lines_version")

    op.drop_table("estimate_lines")
    with op.batch_alter_table("cart_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cart_lines_client_id"))

    op.drop_table("cart_lines")
    with op.batch_alter_table("estimates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimates_client_id"))

    op.drop_table("estimates")
    op.drop_table("price_item_prices")
    with op.batch_alter_table("price_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_price_items_catalogue_key"))

    op.drop_table("price_items")
