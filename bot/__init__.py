"""The chat layer: the answer flow, the conversation every chat platform shares, the chat host,
and one adapter package per platform (``bot/slack/``, ``bot/teams/``); see docs/ARCHITECTURE.md,
"Chat platforms"."""
