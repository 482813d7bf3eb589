"""kill -9 of a process writing to the outbox: every message whose enqueue returned is still there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.publish.outbox import Outbox

REPO = Path(__file__).resolve().parent.parent

WRITER = r"""
import sys
from agent.publish.outbox import OutboundMessage, Outbox
ob = Outbox(sys.argv[1])
start = int(sys.argv[2])
i = start
while True:
    batch = [OutboundMessage(topic="lews/v1/s/n/telemetry/x", payload=b"p%d" % (i + k), qos=1,
                             retain=False, priority=(i + k) % 3, droppable=False, msg_id="m%09d" % (i + k))
             for k in range(3)]
    ob.enqueue_many(batch)
    sys.stdout.write(" ".join(m.msg_id for m in batch) + "\n")
    sys.stdout.flush()
    if i % 7 == 0:
        pending = ob.next_batch(2)
        sys.stdout.write("TRY " + " ".join(p.message.msg_id for p in pending) + "\n")
        sys.stdout.flush()
        ob.ack([p.id for p in pending])
        sys.stdout.write("ACK " + " ".join(p.message.msg_id for p in pending) + "\n")
        sys.stdout.flush()
    i += 3
"""


def _kill_once(path: Path, start: int, after_lines: int) -> tuple[set[str], set[str]]:
    """Run the writer, SIGKILL it after ``after_lines`` confirmed lines; return (accepted, acked)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(start)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    accepted: set[str] = set()
    acked: set[str] = set()
    lines = 0
    deadline = time.monotonic() + 60
    while lines < after_lines and time.monotonic() < deadline:
        if not _record(proc.stdout.readline(), accepted, acked):
            break
        lines += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    for raw in proc.stdout:  # lines written before the kill but not read yet
        _record(raw, accepted, acked)
    return accepted, acked


def _record(raw: bytes, accepted: set[str], acked: set[str]) -> bool:
    """One complete line of the writer (a torn last line is ignored: it was not confirmed)."""
    if not raw.endswith(b"\n"):
        return False
    words = raw.decode().split()
    if words and words[0] == "ACK":
        acked.update(words[1:])
    elif words and words[0] == "TRY":  # being acknowledged: if the kill lands now, either outcome is fine
        acked.update(f"?{w}" for w in words[1:])
    else:
        accepted.update(words)
    return True


def _check(path: Path, accepted: set[str], acked: set[str]) -> set[str]:
    with Outbox(path) as ob:
        pending = ob.all_pending()
    present = {p.message.msg_id for p in pending}
    maybe_acked = {w[1:] for w in acked if w.startswith("?")}
    lost = accepted - acked - maybe_acked - present
    assert not lost, f"{len(lost)} accepted message(s) lost after SIGKILL: {sorted(lost)[:5]}"
    back = present & acked
    assert not back, f"acknowledged message(s) came back: {sorted(back)[:5]}"
    order = [(p.message.priority, p.id) for p in pending]
    assert order == sorted(order), "pending messages are not in (priority, id) order"
    return present


@pytest.mark.faults
def test_sigkill_mid_write_loses_nothing_accepted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    accepted_all: set[str] = set()
    acked_all: set[str] = set()
    for round_ in range(3):
        accepted, acked = _kill_once(path, 1_000_000 * (round_ + 1), after_lines=40 + 13 * round_)
        accepted_all |= accepted
        acked_all |= acked
        _check(path, accepted_all, acked_all)
    assert len(accepted_all) >= 3 * 40 * 3 // 2


@pytest.mark.faults
@pytest.mark.slow
def test_sigkill_fifty_times(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    accepted_all: set[str] = set()
    acked_all: set[str] = set()
    for round_ in range(50):
        accepted, acked = _kill_once(path, 1_000_000 * (round_ + 1), after_lines=5 + (round_ * 7) % 40)
        accepted_all |= accepted
        acked_all |= acked
    _check(path, accepted_all, acked_all)
