"""`agent report`: PNG/HTML plots of the last N days of the daemon state (docs/report-and-status-page.md)."""
