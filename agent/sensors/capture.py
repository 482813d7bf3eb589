"""Raw serial captures: every byte of every port with the UTC time it was read, for replay and bug reports.

A capture is a directory::

    index.json        {"format_version": 1, "created_utc": "...Z", "ports": {NAME: {"file": "NAME.cap",
                       "format": "ubx" | "nmea" | "bridge", "device": "/dev/serial/by-id/...",
                       "baudrate": 115200}}, "closed_utc": "...Z" (once closed cleanly)}
    NAME.cap          b"LEWSCAP1", then records: <f64 t_utc_s><u32 n> n raw bytes (little-endian)

One record is one read from the port (the bytes that arrived together). Files are unbuffered: each
record reaches the OS in one write (the port thread reads in bulk, so that is a few writes a second);
``sync()`` / close fsync them. A record cut short by power loss is ignored (counted) on reading.
The reader yields ``(t, bytes)`` per port in file order and ``(port, t, bytes)`` merged by time.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from agent.compat import UTC
from agent.errors import CaptureError

log = logging.getLogger(__name__)

MAGIC = b"LEWSCAP1"
RECORD = struct.Struct("<dI")
INDEX = "index.json"
FORMAT_VERSION = 1
FORMATS = ("ubx", "nmea", "bridge")
MAX_RECORD = 16 * 1024 * 1024  # one read never returns more; a larger length means a corrupt file


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PortEntry:
    name: str
    file: str
    format: str
    device: str = ""
    baudrate: int | None = None


@dataclass(frozen=True)
class CaptureIndex:
    directory: Path
    created_utc: str
    closed_utc: str | None
    ports: dict[str, PortEntry]


class PortCapture:
    """Appends one port's records; call it as ``on_bytes(t, data)`` (thread-safe)."""

    def __init__(self, fh: BinaryIO, entry: PortEntry) -> None:
        self.entry = entry
        self._fh = fh
        self._lock = threading.Lock()
        self.records = 0
        self.bytes = 0
        self.write_errors = 0

    def __call__(self, t: float, data: bytes) -> None:
        record = RECORD.pack(t, len(data)) + data
        with self._lock:
            try:
                if self._fh.closed:
                    raise OSError("capture file already closed")
                written = self._fh.write(record)
                if written != len(record):
                    raise OSError(f"short write ({written} of {len(record)} bytes)")
            except OSError as exc:
                self.write_errors += 1
                if self.write_errors == 1:
                    log.warning(
                        "capture %s: write failed: %s (counting further failures)", self.entry.name, exc
                    )
                return
            self.records += 1
            self.bytes += len(data)

    def sync(self) -> None:
        with self._lock:
            if not self._fh.closed:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                os.fsync(self._fh.fileno())
                self._fh.close()


class CaptureWriter:
    """Creates a capture directory and one :class:`PortCapture` per port."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(
                f"cannot create capture directory {self.directory}: {exc}", fix="check the path"
            ) from exc
        if (self.directory / INDEX).exists():
            raise CaptureError(
                f"{self.directory} already holds a capture", fix="record into a new, empty directory"
            )
        self.created_utc = _iso(time.time())
        self.ports: dict[str, PortCapture] = {}
        self._write_index(None)

    def add_port(self, name: str, fmt: str, *, device: str = "", baudrate: int | None = None) -> PortCapture:
        if fmt not in FORMATS:
            raise CaptureError(f"capture port {name!r}: unknown format {fmt!r}", fix=f"use one of {FORMATS}")
        if name in self.ports or not name or "/" in name or name.startswith("."):
            raise CaptureError(
                f"capture port name {name!r} is empty, repeated or not a file name", fix="rename it"
            )
        entry = PortEntry(name, f"{name}.cap", fmt, device, baudrate)
        fh = open(self.directory / entry.file, "xb", buffering=0)  # noqa: SIM115 - closed by PortCapture.close
        fh.write(MAGIC)
        port = PortCapture(fh, entry)
        self.ports[name] = port
        self._write_index(None)
        return port

    def sync(self) -> None:
        """fsync every port file (call periodically to bound what a power loss can take)."""
        for port in self.ports.values():
            port.sync()

    def close(self) -> None:
        for port in self.ports.values():
            port.close()
        self._write_index(_iso(time.time()))

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_index(self, closed_utc: str | None) -> None:
        doc: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created_utc": self.created_utc,
            "ports": {
                name: {k: v for k, v in vars(p.entry).items() if k != "name"}
                for name, p in self.ports.items()
            },
        }
        if closed_utc:
            doc["closed_utc"] = closed_utc
        tmp = self.directory / (INDEX + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.directory / INDEX)


def read_index(directory: Path) -> CaptureIndex:
    path = Path(directory) / INDEX
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CaptureError(f"{path} not found", fix="pass a capture directory written by the agent") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise CaptureError(
            f"{path} is not readable JSON: {exc}", fix="restore the index or re-record"
        ) from exc
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise CaptureError(
            f"{path}: format_version is not {FORMAT_VERSION}", fix="use a matching agent version"
        )
    raw_ports = doc.get("ports") or {}
    if not isinstance(raw_ports, dict):
        raise CaptureError(
            f"{path}: 'ports' is a {type(raw_ports).__name__}, not an object of port name -> entry",
            fix="restore the index or re-record",
        )
    ports: dict[str, PortEntry] = {}
    for name, p in raw_ports.items():
        if not isinstance(p, dict) or p.get("format") not in FORMATS or not isinstance(p.get("file"), str):
            raise CaptureError(
                f"{path}: port {name!r} lacks a file or a format in {FORMATS}", fix="fix the index"
            )
        if Path(p["file"]).name != p["file"]:
            raise CaptureError(
                f"{path}: port {name!r} file {p['file']!r} is not a plain file name", fix="fix it"
            )
        ports[name] = PortEntry(name, p["file"], p["format"], p.get("device", ""), p.get("baudrate"))
    return CaptureIndex(Path(directory), str(doc.get("created_utc", "")), doc.get("closed_utc"), ports)


@dataclass
class ReadStats:
    records: int = 0
    bytes: int = 0
    truncated_tail: int = 0  # bytes of an incomplete last record (power loss while writing)
    per_port: dict[str, int] = field(default_factory=dict)


def iter_records(path: Path, stats: ReadStats | None = None) -> Iterator[tuple[float, bytes]]:
    """(t_utc, bytes) of one port file, in file order."""
    stats = stats if stats is not None else ReadStats()
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise CaptureError(
            f"cannot open capture file {path}: {exc}", fix="check the capture directory"
        ) from exc
    try:
        if fh.read(len(MAGIC)) != MAGIC:
            raise CaptureError(
                f"{path} does not start with {MAGIC!r}", fix="pass a .cap file written by the agent"
            )
        while True:
            head = fh.read(RECORD.size)
            if not head:
                return
            if len(head) < RECORD.size:
                stats.truncated_tail += len(head)
                return
            t, n = RECORD.unpack(head)
            if n > MAX_RECORD:
                raise CaptureError(
                    f"{path}: record of {n} bytes at offset {fh.tell() - RECORD.size}", fix="corrupt"
                )
            data = fh.read(n)
            if len(data) < n:
                stats.truncated_tail += RECORD.size + len(data)
                log.warning("%s: last record cut short (%d of %d bytes), ignored", path, len(data), n)
                return
            stats.records += 1
            stats.bytes += n
            yield t, data
    finally:
        fh.close()


def iter_port(directory: Path, name: str, stats: ReadStats | None = None) -> Iterator[tuple[float, bytes]]:
    index = read_index(directory)
    if name not in index.ports:
        raise CaptureError(f"capture {directory} has no port {name!r}", fix=f"ports: {sorted(index.ports)}")
    return iter_records(Path(directory) / index.ports[name].file, stats)


def iter_capture(directory: Path, stats: ReadStats | None = None) -> Iterator[tuple[str, float, bytes]]:
    """(port, t_utc, bytes) of every port merged by time; each port keeps its file order."""
    index = read_index(directory)
    stats = stats if stats is not None else ReadStats()

    def tagged(name: str, entry: PortEntry) -> Iterator[tuple[float, str, bytes]]:
        for t, data in iter_records(Path(directory) / entry.file, stats):
            stats.per_port[name] = stats.per_port.get(name, 0) + 1
            yield t, name, data

    streams = [tagged(name, entry) for name, entry in sorted(index.ports.items())]
    for t, name, data in heapq.merge(*streams, key=lambda rec: rec[0]):
        yield name, t, data
