"""In-app notifications: stored per user, pushed live, read state."""
