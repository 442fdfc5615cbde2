"""catalog sources: the catalogs indexed and their image roots (served without configuration)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_sources',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('catalog', sa.Text(), nullable=False),
    sa.Column('images_root', sa.Text(), nullable=False),
    sa.Column('first_indexed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_indexed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_sources')),
    sa.UniqueConstraint('catalog', 'images_root', name=op.f('uq_catalog_sources_catalog'))
    )


def downgrade() -> None:
    op.drop_table('catalog_sources')
