"""features package of the gateway agent."""
