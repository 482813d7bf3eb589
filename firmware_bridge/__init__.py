"""Serial protocol between the gateway and the site microcontroller (rain gauge, geophone, wire alarm).

Spec: docs/firmware-protocol.md. Test vectors: firmware_bridge/vectors/*.json.
"""

from __future__ import annotations

from firmware_bridge.codec import FrameEncoder, decode_block, encode_frame
from firmware_bridge.errors import BridgeError, FrameError, FrameErrorKind
from firmware_bridge.messages import (
    PROTOCOL_VERSION,
    Ack,
    Capability,
    Command,
    CommandCode,
    Frame,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    Nack,
    NackReason,
    Rain,
    SampleFormat,
    Seismic,
    Wire,
    WireState,
)
from firmware_bridge.reader import BridgeReader, ErrorPolicy, FrameDecoder, ReaderCounters

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "BridgeError",
    "BridgeReader",
    "Capability",
    "Command",
    "CommandCode",
    "ErrorPolicy",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "FrameError",
    "FrameErrorKind",
    "Heartbeat",
    "Hello",
    "Message",
    "MsgType",
    "Nack",
    "NackReason",
    "Rain",
    "ReaderCounters",
    "SampleFormat",
    "Seismic",
    "Wire",
    "WireState",
    "decode_block",
    "encode_frame",
]
