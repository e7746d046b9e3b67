"""Table models. Never used as request or response bodies (table models skip validation).

Times are integer milliseconds since the epoch: portable, exact and cheap to compare on both
databases. KV keys are stored as UTF-8 bytes so that ordering and prefix ranges are byte order on
SQLite and PostgreSQL alike, whatever the database's collation.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, LargeBinary, String, Table
from sqlmodel import Field, SQLModel

# Alembic batch mode on SQLite needs named constraints; set before any table is declared.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Workspace(SQLModel, table=True):
    __tablename__ = "workspace"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    quota_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Exact bytes stored by this workspace (KV keys + values, memory messages). Changed only in
    # the same transaction as the data it counts.
    used_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # Monotonic per-workspace counter: every write takes the next value as its version, so an
    # ETag is never reused, even after a key is deleted and created again.
    version_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("workspace.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    key_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    label: str = Field(default="", sa_column=Column(String(128), nullable=False, default=""))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class KvEntry(SQLModel, table=True):
    __tablename__ = "kv_entry"
    __table_args__ = (
        Index("uq_kv_entry_workspace_key", "workspace_id", "key", unique=True),
        Index("ix_kv_entry_expires_at", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(
        sa_column=Column(Integer, ForeignKey("workspace.id", ondelete="CASCADE"), nullable=False)
    )
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_type: str = Field(sa_column=Column(String(255), nullable=False))
    # Bytes charged to the quota: len(key) + len(value).
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class ServerSecret(SQLModel, table=True):
    """Secrets of the whole service, shared by every replica through the database (the key that
    authenticates and encrypts cursors). Created by migration 0003; never in a backup."""

    __tablename__ = "server_secret"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model, for the storage functions' SQL."""
    # SQLModel's metaclass sets __table__ on every table=True class; its type hints do not say so.
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


workspace_t = table_of(Workspace)
server_secret_t = table_of(ServerSecret)
api_key_t = table_of(ApiKey)
kv_entry_t = table_of(KvEntry)

# The memory block API's tables live in their own module; importing it here registers them in
# the metadata that Alembic and every importer of this module see.
from . import memory_tables  # noqa: E402, F401
