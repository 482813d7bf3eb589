"""Gateway side of COMMAND -> ACK/NACK: send a command, match the answer by its token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from firmware_bridge.codec import FrameEncoder
from firmware_bridge.errors import BridgeError
from firmware_bridge.messages import Ack, Command, CommandCode, Frame, Nack


class CommandTimeout(BridgeError):
    """The device did not answer a COMMAND in time."""


class CommandClient:
    """Thread-safe: ``call`` from any thread; feed every received frame to :meth:`on_frame`."""

    def __init__(self, write: Callable[[bytes], object], *, encoder: FrameEncoder | None = None) -> None:
        self._write = write
        self.encoder = encoder or FrameEncoder()
        self._cond = threading.Condition()
        self._token = 0
        self._answers: dict[int, Ack | Nack] = {}
        self._waiting: set[int] = set()
        self.unmatched = 0  # answers with a token nobody waits for (late or foreign)

    def send(self, code: CommandCode | int, arg: int = 0) -> int:
        with self._cond:
            self._token = self._token % 65535 + 1
            token = self._token
            self._waiting.add(token)
            data = self.encoder.encode(Command(token, int(code), arg))
        self._write(data)
        return token

    def on_frame(self, frame: Frame) -> bool:
        """True if the frame answered a pending command."""
        msg = frame.message
        if not isinstance(msg, Ack | Nack):
            return False
        with self._cond:
            if msg.token not in self._waiting:
                self.unmatched += 1
                return False
            self._waiting.discard(msg.token)
            self._answers[msg.token] = msg
            self._cond.notify_all()
        return True

    def wait(self, token: int, timeout_s: float) -> Ack | Nack | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while token not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._waiting.discard(token)
                    return None
                self._cond.wait(left)
            return self._answers.pop(token)

    def call(self, code: CommandCode | int, arg: int = 0, *, timeout_s: float = 2.0) -> Ack | Nack:
        """Send a command and wait for its ACK or NACK; raises CommandTimeout."""
        token = self.send(code, arg)
        answer = self.wait(token, timeout_s)
        if answer is None:
            name = code.name if isinstance(code, CommandCode) else str(code)
            raise CommandTimeout(
                f"no ACK/NACK for command {name} (token {token}) within {timeout_s} s",
                fix="check the bridge port, its cable and that the device is powered",
            )
        return answer
