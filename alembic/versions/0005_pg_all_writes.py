"""PostgreSQL: every other write that locks a workspace as one server-side function call

Written by hand. Migration 0004 made KV sets and deletes and the plain memory add one statement
each; every other write still ran as a transaction of several round trips (BEGIN, lock the
workspace row, read, write, save the account, COMMIT), holding the workspace lock across all of
them: an add with an Idempotency-Key, a block name, several messages or a lastN window; a memory
delete; a block rename; `GET /api/usage` and the expired-entry sweep. These functions take the
same lock and make the same decisions, in the same order, inside the server, so the service
calls each as one autocommit statement and the lock is held within that one round trip.

The rules are those of the Python transactions, kept exactly (services/memory/add.py `add_txn`,
services/memory/changes.py, services/kv.py `charge`, `usage_txn`, `sweep_workspace_txn`):
- the workspace row is locked first, then everything else is read (statements of their own, so
  in READ COMMITTED they see every write committed before the lock was granted);
- every refusal (quota, exhausted Idempotency-Keys, a reused key, a deleted memory) is decided
  before anything is written, so a refusal changes nothing, as the rolled-back transaction did;
- charges come in add_txn's order (messages, then a new memory's ids, then a block name), each
  sweeping expired KV entries only when it would not fit otherwise, as `charge` does;
- an add's answer (the lastN window, the leading system message, a replay's messages) is read
  under the same lock, so it is exactly what the Python transaction answered.

SQLite has no server-side functions and needs none (its writes are in-process): no-op there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Any add (add_txn). p_name NULL: no blockName given; p_key NULL: no Idempotency-Key. Byte counts
# of the ids and of the new name's registry entry come from the service (storage/memory.py
# `id_bytes`, `name_bytes`). Statuses: ok, replay, gone, quota (used/delta), exhausted (oldest),
# reused (the key was used for another request), deleted (the key's memory is gone).
MEMORY_APPEND = """
CREATE FUNCTION ms_memory_append(
    p_ws integer, p_conv varchar, p_block varchar, p_name varchar, p_name_bytes bigint,
    p_roles varchar[], p_contents bytea[], p_sizes bigint[], p_id_bytes bigint,
    p_key varchar, p_hash varchar, p_cutoff bigint, p_max_keys bigint,
    p_last_n bigint, p_keep_system boolean, p_now bigint,
    OUT status text, OUT memory_id integer, OUT first_seq bigint, OUT message_count bigint,
    OUT created_at bigint, OUT updated_at bigint, OUT block_name varchar, OUT created boolean,
    OUT window_start bigint, OUT seqs bigint[], OUT roles varchar[], OUT contents bytea[],
    OUT used bigint, OUT quota bigint, OUT delta bigint, OUT oldest bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_n integer := coalesce(array_length(p_roles, 1), 0);
    v_size bigint := 0;
    v_mem integer;
    v_end bigint;
    v_hi bigint;
    v_charge bigint;
    v_old_name varchar;
    v_name_delta bigint := 0;
    v_swept boolean := false;
    v_expired bigint := 0;
    v_forget boolean := false;
    v_sweep_keys boolean := false;
    r_found boolean;
    r_memory integer;
    r_first bigint;
    r_count integer;
    r_hash varchar;
    r_created bigint;
BEGIN
    SELECT w.used_bytes, w.quota_bytes INTO used, quota
        FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT i.memory_id, i.first_seq, i.count, i.request_hash, i.created_at
            INTO r_memory, r_first, r_count, r_hash, r_created
            FROM memory_idempotency i WHERE i.workspace_id = p_ws AND i.key = p_key;
        r_found := FOUND;
        IF r_found AND r_created > p_cutoff THEN  -- a retry: answer as the first time
            IF r_hash <> p_hash THEN
                status := 'reused';
                RETURN;
            END IF;
            SELECT m.id, m.message_count, m.created_at, m.updated_at, b.name
                INTO v_mem, message_count, created_at, updated_at, block_name
                FROM memory m LEFT JOIN memory_block b
                    ON b.workspace_id = m.workspace_id AND b.block_id = m.block_id
                WHERE m.workspace_id = p_ws AND m.id = r_memory;
            IF NOT FOUND THEN
                status := 'deleted';
                RETURN;
            END IF;
            status := 'replay';
            first_seq := r_first;
            v_end := r_first + r_count;
            v_hi := v_end;  -- a replay reads its own messages back too
        ELSE
            v_forget := r_found;  -- an expired record of this key is forgotten
            -- At most p_max_keys records a workspace (_make_room_for_idempotency): expired ones
            -- are swept when the bound is reached; with none expired, the add is refused.
            IF (SELECT count(*) FROM (SELECT 1 FROM memory_idempotency i
                    WHERE i.workspace_id = p_ws AND i.key <> p_key LIMIT p_max_keys) c)
                    >= p_max_keys THEN
                v_sweep_keys := true;
                IF (SELECT count(*) FROM (SELECT 1 FROM memory_idempotency i
                        WHERE i.workspace_id = p_ws AND i.created_at > p_cutoff
                        LIMIT p_max_keys) c) >= p_max_keys THEN
                    SELECT min(i.created_at) INTO oldest FROM memory_idempotency i
                        WHERE i.workspace_id = p_ws AND i.created_at > p_cutoff;
                    status := 'exhausted';
                    RETURN;
                END IF;
            END IF;
        END IF;
    END IF;
    IF status IS NULL THEN  -- not a replay: charge, append, name, record
        SELECT coalesce(sum(s), 0) INTO v_size FROM unnest(p_sizes) s;
        SELECT m.id INTO v_mem FROM memory m
            WHERE m.workspace_id = p_ws AND m.conversation_id = p_conv AND m.block_id = p_block;
        created := v_mem IS NULL;
        SELECT b.name INTO v_old_name FROM memory_block b
            WHERE b.workspace_id = p_ws AND b.block_id = p_block;
        block_name := v_old_name;
        IF p_name IS NOT NULL AND p_name IS DISTINCT FROM v_old_name THEN
            v_name_delta := p_name_bytes - CASE WHEN v_old_name IS NULL THEN 0 ELSE
                octet_length(convert_to(p_block, 'UTF8'))
                + octet_length(convert_to(v_old_name, 'UTF8')) END;
        END IF;
        -- charge() thrice, in add_txn's order; a charge of 0 is none.
        FOREACH v_charge IN ARRAY ARRAY[
            v_size, CASE WHEN created THEN p_id_bytes ELSE 0 END, v_name_delta
        ] LOOP
            IF v_charge > 0 AND used + v_charge > quota THEN
                IF NOT v_swept THEN  -- a second sweep in the same transaction frees nothing
                    SELECT coalesce(sum(k.size), 0) INTO v_expired FROM kv_entry k
                        WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
                    v_swept := true;
                    used := used - v_expired;
                END IF;
                IF used + v_charge > quota THEN
                    delta := v_charge;
                    status := 'quota';
                    RETURN;
                END IF;
            END IF;
            used := used + v_charge;
        END LOOP;
        -- Decided: now the writes.
        IF v_forget THEN
            DELETE FROM memory_idempotency i WHERE i.workspace_id = p_ws AND i.key = p_key;
        END IF;
        IF v_sweep_keys THEN
            DELETE FROM memory_idempotency i
                WHERE i.workspace_id = p_ws AND i.created_at <= p_cutoff;
        END IF;
        IF v_swept THEN
            DELETE FROM kv_entry k WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
        END IF;
        IF created THEN
            INSERT INTO memory (workspace_id, conversation_id, block_id, next_seq, message_count,
                                bytes, created_at, updated_at)
                VALUES (p_ws, p_conv, p_block, v_n, v_n, v_size + p_id_bytes, p_now, p_now)
                RETURNING id INTO v_mem;
            first_seq := 0;
            message_count := v_n;
            created_at := p_now;
        ELSE
            UPDATE memory m SET next_seq = m.next_seq + v_n,
                    message_count = m.message_count + v_n, bytes = m.bytes + v_size,
                    updated_at = p_now
                WHERE m.id = v_mem
                RETURNING m.next_seq - v_n, m.message_count, m.created_at
                INTO first_seq, message_count, created_at;
        END IF;
        INSERT INTO memory_message (memory_id, seq, role, content, size, created_at)
            SELECT v_mem, first_seq + s.i - 1, p_roles[s.i], p_contents[s.i], p_sizes[s.i], p_now
                FROM generate_series(1, v_n) AS s(i);
        IF p_name IS NOT NULL AND p_name IS DISTINCT FROM v_old_name THEN
            INSERT INTO memory_block AS b (workspace_id, block_id, name, updated_at)
                VALUES (p_ws, p_block, p_name, p_now)
                ON CONFLICT (workspace_id, block_id) DO UPDATE
                    SET name = excluded.name, updated_at = excluded.updated_at;
            block_name := p_name;
        END IF;
        IF p_key IS NOT NULL THEN
            INSERT INTO memory_idempotency (workspace_id, key, memory_id, first_seq, count,
                                            request_hash, created_at)
                VALUES (p_ws, p_key, v_mem, first_seq, v_n, p_hash, p_now);
        END IF;
        UPDATE workspace SET used_bytes = used WHERE id = p_ws;
        status := 'ok';
        updated_at := p_now;
        v_end := first_seq + v_n;
        v_hi := first_seq;  -- the appended messages the service has already
    END IF;
    -- The answer's window (_extend): the last p_last_n messages up to v_end, the leading
    -- system message if asked; the messages before v_hi are read here.
    memory_id := v_mem;
    window_start := greatest(0, least(first_seq, v_end - p_last_n));
    IF window_start >= v_hi AND NOT (p_keep_system AND window_start > 0) THEN
        RETURN;  -- nothing to read (the common add: no window asked for)
    END IF;
    -- Two primary-key ranges (an OR of them would scan the whole memory's messages).
    SELECT array_agg(y.seq ORDER BY y.seq), array_agg(y.role ORDER BY y.seq),
           array_agg(y.content ORDER BY y.seq)
        INTO seqs, roles, contents
        FROM (
            SELECT x.seq, x.role, x.content FROM memory_message x
                WHERE x.memory_id = v_mem AND x.seq >= window_start AND x.seq < v_hi
            UNION ALL
            SELECT x.seq, x.role, x.content FROM memory_message x
                WHERE p_keep_system AND window_start > 0
                    AND x.memory_id = v_mem AND x.seq = 0 AND x.role = 'system'
        ) y;
END
$$
"""

# Adds arriving together, in one statement (storage/pg_batch.py): the messages of all of them
# flattened into one array each, p_counts[i] of them for the i-th add (arrays of arrays must be
# rectangular in PostgreSQL).
MEMORY_APPEND_MANY = """
CREATE FUNCTION ms_memory_append_many(
    p_ws integer[], p_conv varchar[], p_block varchar[], p_name varchar[],
    p_name_bytes bigint[], p_counts integer[], p_roles varchar[], p_contents bytea[],
    p_sizes bigint[], p_id_bytes bigint[], p_key varchar[], p_hash varchar[],
    p_cutoff bigint[], p_max_keys bigint[], p_last_n bigint[], p_keep_system boolean[],
    p_now bigint[]
) RETURNS TABLE (
    status text, memory_id integer, first_seq bigint, message_count bigint, created_at bigint,
    updated_at bigint, block_name varchar, created boolean, window_start bigint, seqs bigint[],
    roles varchar[], contents bytea[], used bigint, quota bigint, delta bigint, oldest bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_off integer := 0;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ws, 1), 0) LOOP
        RETURN QUERY SELECT * FROM ms_memory_append(
            p_ws[i], p_conv[i], p_block[i], p_name[i], p_name_bytes[i],
            p_roles[v_off + 1 : v_off + p_counts[i]], p_contents[v_off + 1 : v_off + p_counts[i]],
            p_sizes[v_off + 1 : v_off + p_counts[i]], p_id_bytes[i], p_key[i], p_hash[i],
            p_cutoff[i], p_max_keys[i], p_last_n[i], p_keep_system[i], p_now[i]);
        v_off := v_off + p_counts[i];
    END LOOP;
END
$$
"""

# delete_txn: the matching memories (NULL filters match any) and their messages; their bytes
# freed. The filters go into the statement only when given, so each combination is planned on
# its own indexes (EXECUTE plans every time, with the values).
MEMORY_DELETE = """
CREATE FUNCTION ms_memory_delete(
    p_ws integer, p_conv varchar, p_block varchar, p_name varchar,
    OUT status text, OUT deleted bigint, OUT freed bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_where text := 'm.workspace_id = $1';
BEGIN
    PERFORM 1 FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    IF p_conv IS NOT NULL THEN
        v_where := v_where || ' AND m.conversation_id = $2';
    END IF;
    IF p_block IS NOT NULL THEN
        v_where := v_where || ' AND m.block_id = $3';
    END IF;
    IF p_name IS NOT NULL THEN
        v_where := v_where || ' AND m.block_id IN (SELECT b.block_id FROM memory_block b'
            ' WHERE b.workspace_id = $1 AND b.name = $4)';
    END IF;
    EXECUTE 'WITH gone AS (DELETE FROM memory m WHERE ' || v_where || ' RETURNING m.bytes)'
        ' SELECT count(*), coalesce(sum(g.bytes), 0) FROM gone g'
        INTO deleted, freed USING p_ws, p_conv, p_block, p_name;
    IF deleted > 0 THEN
        UPDATE workspace SET used_bytes = used_bytes - freed WHERE id = p_ws;
    END IF;
    status := 'ok';
END
$$
"""

# set_block_txn: name a block (p_name NULL forgets its name), the registry entry charged.
BLOCK_SET = """
CREATE FUNCTION ms_block_set(
    p_ws integer, p_block varchar, p_name varchar, p_name_bytes bigint, p_now bigint,
    OUT status text, OUT used bigint, OUT quota bigint, OUT delta bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_old varchar;
    v_expired bigint;
BEGIN
    SELECT w.used_bytes, w.quota_bytes INTO used, quota
        FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        RETURN;
    END IF;
    SELECT b.name INTO v_old FROM memory_block b
        WHERE b.workspace_id = p_ws AND b.block_id = p_block;
    delta := p_name_bytes - CASE WHEN v_old IS NULL THEN 0 ELSE
        octet_length(convert_to(p_block, 'UTF8')) + octet_length(convert_to(v_old, 'UTF8')) END;
    IF delta > 0 AND used + delta > quota THEN  -- charge(): sweep only if it would not fit
        SELECT coalesce(sum(k.size), 0) INTO v_expired FROM kv_entry k
            WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
        used := used - v_expired;
        IF used + delta > quota THEN
            status := 'quota';
            RETURN;
        END IF;
        DELETE FROM kv_entry k WHERE k.workspace_id = p_ws AND k.expires_at <= p_now;
    END IF;
    used := used + delta;
    IF p_name IS NULL THEN
        DELETE FROM memory_block b WHERE b.workspace_id = p_ws AND b.block_id = p_block;
    ELSE
        INSERT INTO memory_block AS b (workspace_id, block_id, name, updated_at)
            VALUES (p_ws, p_block, p_name, p_now)
            ON CONFLICT (workspace_id, block_id) DO UPDATE
                SET name = excluded.name, updated_at = excluded.updated_at;
    END IF;
    UPDATE workspace SET used_bytes = used WHERE id = p_ws;
    status := 'ok';
END
$$
"""

# usage_txn and sweep_workspace_txn: delete the workspace's expired KV entries, free their bytes.
KV_SWEEP = """
CREATE FUNCTION ms_kv_sweep(
    p_ws integer, p_now bigint,
    OUT status text, OUT used bigint, OUT quota bigint, OUT freed bigint
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT w.used_bytes, w.quota_bytes INTO used, quota
        FROM workspace w WHERE w.id = p_ws FOR UPDATE;
    IF NOT FOUND THEN
        status := 'gone';
        freed := 0;
        RETURN;
    END IF;
    WITH gone AS (
        DELETE FROM kv_entry k WHERE k.workspace_id = p_ws AND k.expires_at <= p_now
            RETURNING k.size
    ) SELECT coalesce(sum(g.size), 0) INTO freed FROM gone g;
    IF freed <> 0 THEN
        used := used - freed;
        UPDATE workspace SET used_bytes = used WHERE id = p_ws;
    END IF;
    status := 'ok';
END
$$
"""

FUNCTIONS = {
    'ms_memory_append': MEMORY_APPEND,
    'ms_memory_append_many': MEMORY_APPEND_MANY,
    'ms_memory_delete': MEMORY_DELETE,
    'ms_block_set': BLOCK_SET,
    'ms_kv_sweep': KV_SWEEP,
}


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for body in FUNCTIONS.values():
        op.execute(body)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name in reversed(FUNCTIONS):  # the batch function calls the single one: dropped first
        op.execute(f'DROP FUNCTION {name}')
