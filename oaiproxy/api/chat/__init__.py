"""OpenAI Chat Completions: wire types, the legacy ``functions`` translation."""
