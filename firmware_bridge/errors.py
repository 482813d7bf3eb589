"""Typed exceptions of the firmware bridge (independent of ``agent/``).

Every error names the thing that is wrong and, in ``fix``, what to do about it.
"""

from __future__ import annotations

from enum import Enum


class BridgeError(Exception):
    """Base of every error the firmware bridge raises on purpose."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class FrameErrorKind(str, Enum):
    """Why a received frame was dropped; each kind has its own counter in the reader.

    A str-valued Enum whose str() is its value, like 3.11's StrEnum (the bridge runs on Python 3.10).
    """

    BAD_COBS = "bad_cobs"  # COBS structure broken (code byte points past the frame end)
    BAD_LENGTH = "bad_length"  # shorter than header + CRC, or payload size does not match the type's layout
    BAD_CRC = "bad_crc"  # CRC-32C over header + payload differs from the trailer
    VERSION_MISMATCH = "version_mismatch"  # CRC fine, but a protocol version this reader does not speak
    UNKNOWN_TYPE = "unknown_type"  # CRC fine, but a message type not in the layout table
    BAD_VALUE = "bad_value"  # CRC fine, but a field is out of its domain (enum, boot id 0, sample count)
    OVERSIZE = "oversize"  # more bytes than the largest legal frame without a 0x00 delimiter
    DUPLICATE = "duplicate"  # same boot id and sequence number as the previous frame

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class FrameError(BridgeError):
    """One received frame could not be accepted; ``kind`` says why."""

    def __init__(self, kind: FrameErrorKind, message: str, *, fix: str = "") -> None:
        super().__init__(message, fix=fix)
        self.kind = kind


class EncodeError(BridgeError):
    """A message cannot be encoded (a field out of its range, too many samples)."""


class ScenarioError(BridgeError):
    """A simulator scenario is inconsistent (times out of order, negative rates, unknown keys)."""


class VectorError(BridgeError):
    """A test-vector file is malformed."""
