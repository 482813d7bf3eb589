"""`agent diagnose` and `agent status`: time-bounded field checks, a support archive, the daemon's state."""
