"""The conversation model every API surface translates onto, and the rules it must satisfy."""
