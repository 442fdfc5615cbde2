"""sweep results (analyst workbench: index setting sweeps)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sweep_id', sa.String(length=64), nullable=False),
    sa.Column('index_spec', sa.String(length=255), nullable=False),
    sa.Column('nprobe', sa.Integer(), nullable=True),
    sa.Column('ef_search', sa.Integer(), nullable=True),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('recall', sa.Float(), nullable=False),
    sa.Column('queries_per_s', sa.Float(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('build_seconds', sa.Float(), nullable=False),
    sa.Column('n_vectors', sa.Integer(), nullable=False),
    sa.Column('n_queries', sa.Integer(), nullable=False),
    sa.Column('model_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('generation', sa.String(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweep_results'))
    )
    with op.batch_alter_table('sweep_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_results_sweep_id'), ['sweep_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sweep_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweep_results_sweep_id'))
    op.drop_table('sweep_results')
