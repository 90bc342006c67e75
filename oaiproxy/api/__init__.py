"""The HTTP surfaces: the aiohttp application and one protocol package per API.

Each API package (``chat``, ``completions``, ``embeddings``) holds its wire types and the code
that translates its requests onto the engine; ``app`` routes, authenticates and streams.
"""
