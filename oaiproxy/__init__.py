"""oaiproxy: OpenAI-compatible tool calling for any GGUF model, in front of llama-server."""

__version__ = "0.1.0"
