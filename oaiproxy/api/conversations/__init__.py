"""The OpenAI Conversations API (``/v1/conversations``) on the store: conversations and their items."""
