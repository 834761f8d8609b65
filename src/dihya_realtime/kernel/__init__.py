"""What every feature relies on and no feature defines: connections, the event pipeline
and registry, errors, settings, auth, audit, expiry, rate limits, redaction, permissions."""
