"""PostgreSQL write functions: each KV write is one statement, so the workspace row lock is held
for no client round trip at all

Written by hand. A KV write used to be BEGIN, lock the workspace row, read the entry, upsert,
update the counters, COMMIT: the lock was held across four round trips between the service and
the database, and every other writer of that workspace (on every replica) waited through them.
These functions take the same lock and make the same decisions, in the same order, inside the
server; the service calls one of them as a statement of its own (autocommit), so the lock is
taken and released within that one statement.

The rules are those of services/kv.py (`set_txn`, `delete_txn`, `charge`), kept exactly:
- the workspace row is locked first, then the entry is read (a statement of its own inside the
  function, so in READ COMMITTED it sees every write committed before the lock was granted);
- If-Match / If-None-Match are decided on the live entry's version before anything changes;
- the quota is decided before anything is stored or deleted: the bytes an expired entry holds
  count as free only when the write would not fit otherwise, exactly as `charge` sweeps them;
- versions come from the workspace's `version_seq`, incremented under the lock, never reused.

A refusal changes nothing and returns a status for the service to turn into its usual error.
SQLite has no server-side functions and needs none (its writes are in-process): no-op there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Conditions arrive parsed: NULL `*_any` means the header was absent; `*_tags` hold the versions
# named by tags that can match (If-Match: strong tags only; If-None-Match: weak or strong).
KV_SET = """
CREATE FUNCTION ms_kv_set(
    p_ws integer, p_key bytea, p_value bytea, p_content_type varchar, p_expires_at bigint,
    p_now bigint, p_im_any boolean, p_im_tags bigint[], p_inm_any boolean, p_inm_tags bigint[],
    OUT status text, OUT version bigint, OUT created boolean, OUT size bigint,
    OUT used bigint, OUT quota bigint, OUT delta bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    e_id integer;
    e_size bigint;
    e_version bigint;
    e_expires bigint;
    e_live boolean;
    v_current bigint;
    v_sweep bigint := 0;
BEGIN
    SELECT w.used_bytes, w.quota_bytes, w.version_seq INTO used, quota, v_seq
        FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    SELECT k.id, k.size, k.version, k.expires_at INTO e_id, e_size, e_version, e_expires
        FROM kv_entry k WHERE k.workspace_id = p_ws AND k.key = p_key;
    e_live := e_id IS NOT NULL AND (e_expires IS NULL OR e_expires > p_now);
    v_current := CASE WHEN e_live THEN e_version END;
    version := v_current;
    IF p_im_any IS NOT NULL AND NOT (
        v_current IS NOT NULL AND (p_im_any OR v_current = ANY(p_im_tags))
    ) THEN
        status := 'precondition';
        RETURN;
    END IF;
    IF p_inm_any IS NOT NULL AND v_current IS NOT NULL
        AND (p_inm_any OR v_current = ANY(p_inm_tags)) THEN
        status := 'precondition';
        RETURN;
    END IF;
    size := octet_length(p_key) + octet_length(p_value);
    IF e_id IS NOT NULL AND NOT e_live THEN
        used := used - e_size;  -- the key's own expired entry: deleted below, if the write fits
    END IF;
    delta := size - CASE WHEN e_live THEN e_size ELSE 0 END;
    IF delta > 0 AND used + delta > quota THEN
        -- What a sweep of the other expired entries would free (the key's own is counted).
        SELECT coalesce(sum(k.size), 0) INTO v_sweep FROM kv_entry k
            WHERE k.workspace_id = p_ws AND k.expires_at <= p_now AND k.id IS DISTINCT FROM e_id;
        IF used - v_sweep + delta > quota THEN
            used := used - v_sweep;
            status := 'quota';
            RETURN;
        END IF;
    END IF;
    IF e_id IS NOT NULL AND NOT e_live THEN
        DELETE FROM kv_entry WHERE id = e_id;
    END IF;
    IF v_sweep > 0 THEN
        DELETE FROM kv_entry k WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
        used := used - v_sweep;
    END IF;
    used := used + delta;
    v_seq := v_seq + 1;
    INSERT INTO kv_entry AS k (workspace_id, key, value, content_type, size, version,
                               expires_at, created_at, updated_at)
        VALUES (p_ws, p_key, p_value, p_content_type, size, v_seq, p_expires_at, p_now, p_now)
        ON CONFLICT (workspace_id, key) DO UPDATE SET
            value = excluded.value, content_type = excluded.content_type,
            size = excluded.size, version = excluded.version,
            expires_at = excluded.expires_at, updated_at = excluded.updated_at,
            created_at = excluded.created_at;
    UPDATE workspace SET used_bytes = used, version_seq = v_seq WHERE id = p_ws;
    status := 'ok';
    version := v_seq;
    created := NOT e_live;
END
$$
"""

# Many sets in one statement: one commit (one WAL flush) for all, in the order given. The service
# gathers the sets waiting at the same moment (storage/database.py, PgBatcher) and sends them
# ordered by workspace (stable), so that any two statements take their row locks in the same
# order and cannot deadlock. Tags are given as comma-separated text (arrays of arrays must be
# rectangular in PostgreSQL).
KV_SET_MANY = """
CREATE FUNCTION ms_kv_set_many(
    p_ws integer[], p_key bytea[], p_value bytea[], p_content_type varchar[],
    p_expires_at bigint[], p_now bigint[], p_im_any boolean[], p_im_tags text[],
    p_inm_any boolean[], p_inm_tags text[]
) RETURNS TABLE (
    status text, version bigint, created boolean, size bigint, used bigint, quota bigint,
    delta bigint
) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ws, 1), 0) LOOP
        RETURN QUERY SELECT * FROM ms_kv_set(
            p_ws[i], p_key[i], p_value[i], p_content_type[i], p_expires_at[i], p_now[i],
            p_im_any[i], string_to_array(p_im_tags[i], ',')::bigint[],
            p_inm_any[i], string_to_array(p_inm_tags[i], ',')::bigint[]);
    END LOOP;
END
$$
"""

# One message appended to a memory (the common add: no Idempotency-Key, no block name; the
# service runs every other add as before). The rules of services/memory/add.py `add_txn`: the
# workspace lock first; the message charged before anything is stored (expired KV entries swept
# only when it would not fit otherwise, as `charge` does); a new memory's ids charged too, and a
# refusal of either changes nothing; the memory's next sequence number taken under the lock.
MEMORY_ADD = """
CREATE FUNCTION ms_memory_add(
    p_ws integer, p_conv varchar, p_block varchar, p_role varchar, p_content bytea,
    p_size bigint, p_id_bytes bigint, p_now bigint,
    OUT status text, OUT memory_id integer, OUT first_seq bigint, OUT message_count bigint,
    OUT created_at bigint, OUT block_name varchar, OUT created boolean,
    OUT used bigint, OUT quota bigint, OUT delta bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_swept boolean := false;
    v_sweep bigint := 0;
BEGIN
    SELECT w.used_bytes, w.quota_bytes INTO used, quota
        FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    SELECT m.id INTO memory_id FROM memory m
        WHERE m.workspace_id = p_ws AND m.conversation_id = p_conv AND m.block_id = p_block;
    created := memory_id IS NULL;
    -- charge(message): sweep only if it would not fit
    IF p_size > 0 AND used + p_size > quota THEN
        SELECT coalesce(sum(k.size), 0) INTO v_sweep FROM kv_entry k
            WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
        v_swept := true;
        IF used - v_sweep + p_size > quota THEN
            used := used - v_sweep;
            delta := p_size;
            status := 'quota';
            RETURN;
        END IF;
    END IF;
    -- charge(ids) of a new memory, after the message's charge
    IF created AND p_id_bytes > 0
        AND used - v_sweep + p_size + p_id_bytes > quota THEN
        IF NOT v_swept THEN
            SELECT coalesce(sum(k.size), 0) INTO v_sweep FROM kv_entry k
                WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
            v_swept := true;
        END IF;
        IF used - v_sweep + p_size + p_id_bytes > quota THEN
            used := used - v_sweep + p_size;
            delta := p_id_bytes;
            status := 'quota';
            RETURN;
        END IF;
    END IF;
    IF v_sweep > 0 THEN
        DELETE FROM kv_entry k WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
    END IF;
    used := used - v_sweep + p_size + CASE WHEN created THEN p_id_bytes ELSE 0 END;
    IF created THEN
        INSERT INTO memory (workspace_id, conversation_id, block_id, next_seq, message_count,
                            bytes, created_at, updated_at)
            VALUES (p_ws, p_conv, p_block, 1, 1, p_size + p_id_bytes, p_now, p_now)
            RETURNING id INTO memory_id;
        first_seq := 0;
        message_count := 1;
        created_at := p_now;
    ELSE
        UPDATE memory m SET next_seq = m.next_seq + 1, message_count = m.message_count + 1,
                bytes = m.bytes + p_size, updated_at = p_now
            WHERE m.id = memory_id
            RETURNING m.next_seq - 1, m.message_count, m.created_at
            INTO first_seq, message_count, created_at;
    END IF;
    SELECT b.name INTO block_name FROM memory_block b
        WHERE b.workspace_id = p_ws AND b.block_id = p_block;
    INSERT INTO memory_message (memory_id, seq, role, content, size, created_at)
        VALUES (memory_id, first_seq, p_role, p_content, p_size, p_now);
    UPDATE workspace SET used_bytes = used WHERE id = p_ws;
    status := 'ok';
END
$$
"""

MEMORY_ADD_MANY = """
CREATE FUNCTION ms_memory_add_many(
    p_ws integer[], p_conv varchar[], p_block varchar[], p_role varchar[], p_content bytea[],
    p_size bigint[], p_id_bytes bigint[], p_now bigint[]
) RETURNS TABLE (
    status text, memory_id integer, first_seq bigint, message_count bigint, created_at bigint,
    block_name varchar, created boolean, used bigint, quota bigint, delta bigint
) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ws, 1), 0) LOOP
        RETURN QUERY SELECT * FROM ms_memory_add(
            p_ws[i], p_conv[i], p_block[i], p_role[i], p_content[i], p_size[i], p_id_bytes[i],
            p_now[i]);
    END LOOP;
END
$$
"""

KV_DELETE = """
CREATE FUNCTION ms_kv_delete(
    p_ws integer, p_key bytea, p_now bigint,
    p_im_any boolean, p_im_tags bigint[], p_inm_any boolean, p_inm_tags bigint[],
    OUT status text, OUT version bigint, OUT live boolean, OUT freed bigint
) LANGUAGE plpgsql AS $$
DECLARE
    e_id integer;
    e_size bigint;
    e_version bigint;
    e_expires bigint;
BEGIN
    PERFORM 1 FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    SELECT k.id, k.size, k.version, k.expires_at INTO e_id, e_size, e_version, e_expires
        FROM kv_entry k WHERE k.workspace_id = p_ws AND k.key = p_key;
    live := e_id IS NOT NULL AND (e_expires IS NULL OR e_expires > p_now);
    IF live THEN  -- an absent key is a 404 whatever the conditions (RFC 9110 13.2.1)
        version := e_version;
        IF (p_im_any IS NOT NULL AND NOT (p_im_any OR e_version = ANY(p_im_tags)))
            OR (p_inm_any IS NOT NULL AND (p_inm_any OR e_version = ANY(p_inm_tags))) THEN
            status := 'precondition';
            RETURN;
        END IF;
    END IF;
    status := 'ok';
    freed := 0;
    IF e_id IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM kv_entry WHERE id = e_id;
    UPDATE workspace SET used_bytes = used_bytes - e_size WHERE id = p_ws;
    freed := e_size;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(KV_SET)
    op.execute(KV_SET_MANY)
    op.execute(MEMORY_ADD)
    op.execute(MEMORY_ADD_MANY)
    op.execute(KV_DELETE)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP FUNCTION ms_memory_add_many')
    op.execute('DROP FUNCTION ms_memory_add')
    op.execute('DROP FUNCTION ms_kv_delete')
    op.execute('DROP FUNCTION ms_kv_set_many')
    op.execute('DROP FUNCTION ms_kv_set')
