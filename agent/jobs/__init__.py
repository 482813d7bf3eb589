"""The daemon's jobs, one module each, composed by agent/daemon.py and run by agent/jobs/scheduler.py.

wire (port thread, at once) - forecast - riskmap - models (bundle inbox) - evaluate (warning engine) -
telemetry - disk (free space, degraded mode) - status (status.json, history) - watchdog (systemd).
"""
