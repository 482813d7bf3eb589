"""Logging for the CLIs and the daemon: text for people, JSON lines for journald / log shippers.

``LEWS_LOG_LEVEL`` (default INFO) and ``LEWS_LOG_FORMAT`` (``text`` | ``json``; the systemd unit sets
json) choose. JSON lines carry time (UTC ISO), level, logger, message, thread and, for errors, the
exception; journald stores each line as one entry.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from agent.compat import UTC, level_names


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


# syslog priorities (sd-daemon.h SD_CRIT..SD_DEBUG) for journald's "<N>" line prefix
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalPriority(logging.Formatter):
    """Prefix each line with "<N>", its syslog priority: journald (SyslogLevelPrefix=yes, the default)
    strips it and stores the entry with that PRIORITY, so `journalctl -p err` shows the errors."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prio = next((p for lvl, p in sorted(PRIORITY.items(), reverse=True) if record.levelno >= lvl), 7)
        return f"<{prio}>" + self.inner.format(record)


def stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM=dev:inode when stderr is connected to journald (systemd.exec(5))."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup_logging() -> None:
    level = os.environ.get("LEWS_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    inner: logging.Formatter
    if os.environ.get("LEWS_LOG_FORMAT", "text").lower() == "json":
        inner = JsonFormatter()
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JournalPriority(inner) if stderr_is_journal() else inner)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in level_names() else "INFO")


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def held_logs(*, replay: bool) -> Iterator[list[logging.LogRecord]]:
    """Hold every log record emitted inside the block; afterwards print them (``replay``) or drop them.

    For commands whose output is a table a person reads (``agent diagnose``): the table comes first,
    the log lines only on request (``--verbose``), never interleaved."""
    root = logging.getLogger()
    holder = _Holder()
    saved = root.handlers[:]
    root.handlers[:] = [holder]
    try:
        yield holder.records
    finally:
        root.handlers[:] = saved
        if replay:
            for record in holder.records:
                for handler in saved:
                    if record.levelno >= handler.level:
                        handler.handle(record)
