"""The HTTP surfaces: the aiohttp application and one package per API.

Each API package (``chat``, ``completions``, ``embeddings``) holds its wire types
(``protocol.py``), the code that translates its requests onto the engine (``serving.py``;
chat also ``translate.py``, onto the conversation) and its route (``routes.py``);
``protocol`` holds what the OpenAI surfaces share (errors, model list, usage), and ``app``
routes, authenticates and sends JSON or server-sent events.
"""
