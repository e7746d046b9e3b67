"""The access log's fast writer: the same lines as the logging path, and none lost."""

from __future__ import annotations

import io
import json
import logging
import threading

from memory_service.logs import (
    AccessEntry,
    JsonFormatter,
    JsonLinesHandler,
    LoggerAccessLog,
    ThreadedAccessLog,
    access_log,
    mask_secrets,
    request_id_var,
)

ODD = ['a"b\\c', 'wé"s\u2028', "/api/kv/{key}", "msk_" + "x" * 43]


def _through_logging(entry: tuple[float, AccessEntry]) -> dict:
    """The line the plain logging path writes for the same request."""
    _created, (level, request_id, *_) = entry
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("memory_service.access")
    logger.addHandler(handler)
    # setLevel, not the attribute: it also clears the loggers' cached isEnabledFor answers,
    # which an earlier test's app (at the default WARNING) may have filled with "no".
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    token = request_id_var.set(request_id)
    try:
        LoggerAccessLog().record(entry[1])
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return json.loads(stream.getvalue())


def test_fast_lines_equal_the_logging_paths_lines() -> None:
    fast = ThreadedAccessLog(JsonLinesHandler(io.StringIO()))
    for text in ODD:
        for workspace in (None, text):
            request = AccessEntry(logging.INFO, text, "PUT", text, 201, 0.0123456, workspace)
            entry = (1_700_000_000.25, request)
            # Key-shaped text is masked in both (the fast path over each batch it writes).
            got = json.loads(mask_secrets(fast._line(entry)))
            want = _through_logging(entry)
            want.pop("time")
            assert got.pop("time") == "2023-11-14T22:13:20.250Z"
            assert got == want


def test_every_line_recorded_from_many_threads_is_written_once_by_close() -> None:
    stream = io.StringIO()
    writer = ThreadedAccessLog(JsonLinesHandler(stream))
    writer.start()
    threads, per_thread = 8, 2_000

    def emit(t: int) -> None:
        for i in range(per_thread):
            writer.record(AccessEntry(logging.INFO, f"{t}-{i}", "GET", "/x", 200, 0.001, None))

    workers = [threading.Thread(target=emit, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.close()
    writer.record(AccessEntry(logging.INFO, "after-close", "GET", "/x", 200, 0.001, None))
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert len(ids) == threads * per_thread + 1 and ids[-1] == "after-close"
    for t in range(threads):  # each thread's lines once, in its order
        assert [i for i in ids if i.startswith(f"{t}-")] == [f"{t}-{i}" for i in range(per_thread)]


def test_the_fast_writer_is_chosen_only_under_the_services_own_logging() -> None:
    root = logging.getLogger()
    assert isinstance(access_log(), LoggerAccessLog)  # an embedding app's logging: records
    handler = JsonLinesHandler(io.StringIO())
    root.addHandler(handler)
    try:
        assert isinstance(access_log(), ThreadedAccessLog)
    finally:
        root.removeHandler(handler)
