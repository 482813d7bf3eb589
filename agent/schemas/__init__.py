"""JSON Schemas of the MQTT payloads (package data)."""
