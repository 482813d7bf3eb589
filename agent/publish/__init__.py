"""publish package of the gateway agent."""
