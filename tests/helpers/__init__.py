"""Shared test helpers: test modules import these (and the fixtures of conftest.py), never each other.

- :mod:`helpers.wait`: ``wait_until``, the one way a test waits for a condition (with a deadline).
- :mod:`helpers.broker`: a real mosquitto on a free port.
- :mod:`helpers.mqtt_checks`: what a subscriber can verify from the MQTT messages alone.
- :mod:`helpers.demo_state`: one short real demo run whose state dir the report/web tests read.
- :mod:`helpers.site`: a simulated site (GNSS + bridge on ptys) and the `agent diagnose` runner.
- :mod:`helpers.engines`: warning engines driven to a wire trip / a lifecycle, a test publisher.
"""
