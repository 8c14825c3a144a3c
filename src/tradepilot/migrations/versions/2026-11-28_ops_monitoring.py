"""ops monitoring: replica uptime segments, unhandled error groups, operator alert rules;
runtime configuration overrides (docs/operations.md)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tradepilot.core.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('ops_uptime_segment',
    sa.Column('replica_id', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    _time('started_at'),
    _time('last_beat_at'),
    _time('stopped_at', nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_uptime_segment'))
    )
    with op.batch_alter_table('ops_uptime_segment', schema=None) as batch_op:
        batch_op.create_index('ix_ops_uptime_segment_last_beat', ['last_beat_at'], unique=False)

    op.create_table('ops_error_group',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('exception_type', sa.String(length=255), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('route', sa.String(length=255), nullable=True),
    sa.Column('logger', sa.String(length=255), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    _time('first_seen_at'),
    _time('last_seen_at'),
    sa.Column('sample_trace', sa.Text(), nullable=False),
    sa.Column('last_request_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_ops_error_group'))
    )

    op.create_table('ops_config_override',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_by', sa.Uuid(), nullable=True),
    _time('updated_at'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_ops_config_override'))
    )

    op.create_table('ops_alert_rule',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('metric', sa.String(length=40), nullable=False),
    sa.Column('operator', sa.String(length=2), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('window_seconds', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=True),
    _time('last_evaluated_at', nullable=True),
    _time('fired_at', nullable=True),
    sa.Column('fired_by', sa.String(length=128), nullable=True),
    _time('resolved_at', nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    _time('created_at'),
    _time('updated_at'),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_alert_rule')),
    sa.UniqueConstraint('name', name=op.f('uq_ops_alert_rule_name'))
    )


def downgrade() -> None:
    op.drop_table('ops_alert_rule')
    op.drop_table('ops_config_override')
    op.drop_table('ops_error_group')
    with op.batch_alter_table('ops_uptime_segment', schema=None) as batch_op:
        batch_op.drop_index('ix_ops_uptime_segment_last_beat')
    op.drop_table('ops_uptime_segment')
