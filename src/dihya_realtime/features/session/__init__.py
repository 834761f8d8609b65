"""The session events every connection has: who am I, refreshing the token."""
