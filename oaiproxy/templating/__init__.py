"""Templating: the budgeted Jinja sandbox and the chat-template conventions models ship with."""
