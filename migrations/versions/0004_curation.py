"""curation: duplicate / label-audit runs and the label changes merchandisers applied (issue 18)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('curation_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('model_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('generation', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_curation_runs'))
    )
    with op.batch_alter_table('curation_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_curation_runs_kind'), ['kind'], unique=False)

    op.create_table('label_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('column', sa.String(length=64), nullable=False),
    sa.Column('old_value', sa.String(length=128), nullable=True),
    sa.Column('new_value', sa.String(length=128), nullable=False),
    sa.Column('applied_by', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['catalog_items.id'], name=op.f('fk_label_changes_item_id_catalog_items'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['curation_runs.id'], name=op.f('fk_label_changes_run_id_curation_runs'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_changes'))
    )
    with op.batch_alter_table('label_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_label_changes_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('label_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_label_changes_item_id'))
    op.drop_table('label_changes')
    with op.batch_alter_table('curation_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_curation_runs_kind'))
    op.drop_table('curation_runs')
