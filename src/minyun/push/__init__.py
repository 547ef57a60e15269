"""Event push: reading the event log by offset, webhook subscriptions, the NATS relay."""
