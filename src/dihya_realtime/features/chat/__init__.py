"""Chat: conversations, messages, moderation, typing, mentions."""
