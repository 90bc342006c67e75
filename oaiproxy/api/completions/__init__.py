"""OpenAI legacy Completions (``/v1/completions``): raw prompts, no chat template."""
