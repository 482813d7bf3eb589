"""sensors package of the gateway agent."""
