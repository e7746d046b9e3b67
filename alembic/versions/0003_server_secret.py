"""server secret: the key that authenticates and encrypts cursors, shared by all replicas

Written by hand: the secret is made here, once, from the operating system's random source, so
that every replica reading this database seals and opens the same cursors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:15:00
"""
import os
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        'server_secret',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_server_secret')),
    )
    op.bulk_insert(
        table,
        [{'name': 'cursor', 'value': os.urandom(32), 'created_at': int(time.time() * 1000)}],
    )


def downgrade() -> None:
    op.drop_table('server_secret')
