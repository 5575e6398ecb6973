"""The CDP source: export jobs on the on-premise platform through its GraphQL API (API §6)."""
