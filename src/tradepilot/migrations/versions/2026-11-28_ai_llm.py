"""ai llm: active model per task, AI calls per UTC day, the audit of LLM calls

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ai_active_model',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('updated_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ai_active_model_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'task', name=op.f('pk_ai_active_model')),
    )
    op.create_table('ai_call_day',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ai_call_day_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'day', name=op.f('pk_ai_call_day')),
    )
    op.create_table('ai_llm_call',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('prompt_chars', sa.Integer(), nullable=False),
    sa.Column('prompt_sha256', sa.String(length=64), nullable=False),
    sa.Column('context_chars', sa.Integer(), nullable=False),
    sa.Column('symbols', sa.JSON(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('provider_status', sa.Integer(), nullable=True),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ai_llm_call_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ai_llm_call')),
    )
    op.create_index('ix_ai_llm_call_user_created', 'ai_llm_call', ['user_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ai_llm_call_user_created', table_name='ai_llm_call')
    op.drop_table('ai_llm_call')
    op.drop_table('ai_call_day')
    op.drop_table('ai_active_model')
