"""The local status page and /metrics endpoint (docs/report-and-status-page.md)."""
