"""The microcontroller simulator: one import for the device model, the frame generator and the pty device.

* :class:`DeviceModel` (``device_model.py``): the device state machine in scenario time, pure;
* :func:`generate_frames`: every frame of a scenario, no I/O;
* :class:`PtyDevice` (``pty_device.py``): the model on a pseudo-terminal, real or compressed time.

Scenarios are plain data: :mod:`firmware_bridge.scenario`.
"""

from __future__ import annotations

from firmware_bridge.device_model import DeviceModel, SimTruth, generate_frames
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.scenario import Scenario, scenario_from_dict

__all__ = ["DeviceModel", "PtyDevice", "Scenario", "SimTruth", "generate_frames", "scenario_from_dict"]
