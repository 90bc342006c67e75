"""OpenAI Embeddings (``/v1/embeddings``), served by a second llama-server in embedding mode."""
