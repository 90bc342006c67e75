"""The runtime: llama-server processes, the upstream client, admission, the default model, GGUF metadata."""
