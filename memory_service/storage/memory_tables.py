"""Table models of the memory block API (imported by storage/tables.py, so Alembic sees them).

A memory is one row; its messages are rows of their own, numbered 0, 1, 2, ... by a counter on
the memory row (`next_seq`) that each append advances under the workspace lock. Messages are
never rewritten nor deleted one by one (only with their memory), so the numbers are dense: the
last N messages of a memory are exactly those with seq >= next_seq - N, a range of the primary
key that costs the same at ten messages or a hundred thousand.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from .tables import table_of  # (the naming convention and `workspace` come first)

ID_LENGTH = 256  # conversationId, blockId and block names: at most this many characters


class Memory(SQLModel, table=True):
    __tablename__ = "memory"
    __table_args__ = (
        UniqueConstraint("workspace_id", "conversation_id", "block_id"),
        Index("ix_memory_workspace_id_block_id", "workspace_id", "block_id"),
        # getAll and cursor walks go in id order within a workspace.
        Index("ix_memory_workspace_id_id", "workspace_id", "id"),
        # Never reuse an id on SQLite (a deleted last row's id would come back): cursors and
        # idempotency records name memories by id.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(
        sa_column=Column(Integer, ForeignKey("workspace.id", ondelete="CASCADE"), nullable=False)
    )
    conversation_id: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    block_id: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    # The seq the next appended message takes (= the number of messages ever appended).
    next_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    message_count: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Bytes charged to the workspace quota for this memory's messages; freed on delete.
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class MemoryMessage(SQLModel, table=True):
    __tablename__ = "memory_message"
    # The primary key is also the index every read uses; it turns a sequencing mistake (two
    # appends taking the same number) into a loud error instead of a silent duplicate.
    __table_args__ = (PrimaryKeyConstraint("memory_id", "seq"),)

    memory_id: int = Field(
        sa_column=Column(Integer, ForeignKey("memory.id", ondelete="CASCADE"), nullable=False)
    )
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    # UTF-8 bytes: PostgreSQL text cannot hold U+0000, which a JSON string may.
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # Bytes charged: len(role) + len(content in UTF-8).
    size: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class MemoryBlock(SQLModel, table=True):
    """The per-workspace block registry: a block's display name."""

    __tablename__ = "memory_block"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "block_id"),
        Index("ix_memory_block_workspace_id_name", "workspace_id", "name"),
    )

    workspace_id: int = Field(
        sa_column=Column(Integer, ForeignKey("workspace.id", ondelete="CASCADE"), nullable=False)
    )
    block_id: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    name: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class MemoryIdempotency(SQLModel, table=True):
    """What an add with an Idempotency-Key appended, so that a retry answers the same."""

    __tablename__ = "memory_idempotency"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "key"),
        Index("ix_memory_idempotency_created_at", "created_at"),
    )

    workspace_id: int = Field(
        sa_column=Column(Integer, ForeignKey("workspace.id", ondelete="CASCADE"), nullable=False)
    )
    key: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    # No foreign key: a record outlives a deleted memory, so that a late retry is told so
    # instead of appending again. Ids are never reused (AUTOINCREMENT / sequences).
    memory_id: int = Field(sa_column=Column(Integer, nullable=False))
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    count: int = Field(sa_column=Column(Integer, nullable=False))
    # SHA-256 of the request: the same key with another request is refused, not replayed.
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


memory_t = table_of(Memory)
memory_message_t = table_of(MemoryMessage)
memory_block_t = table_of(MemoryBlock)
memory_idempotency_t = table_of(MemoryIdempotency)
