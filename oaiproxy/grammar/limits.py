"""Every limit the grammar stages enforce, in one place (documented in docs/json-schema.md).

A schema beyond a limit is refused with a :class:`~oaiproxy.grammar.SchemaError`; the limits keep
conversion time, grammar size and llama.cpp's own parser within bounds on hostile input.
"""

MAX_DEPTH = 64
"""Deepest nesting of subschemas followed while converting (also bounds $ref chains)."""
MAX_JSON_NESTING = 256
"""Deepest nesting of JSON containers in the schema document itself."""
MAX_SCHEMA_NODES = 100_000
MAX_RULES = 5_000
MAX_GRAMMAR_CHARS = 1_000_000
MAX_ENUM = 1_000
MAX_COUNT = 1_000_000
"""Largest minLength/maxLength/minItems/maxItems honoured: at most DIRECT_REPEAT chunks of DIRECT_REPEAT, so
each ``x{m,n}`` stays within llama.cpp's 2000 (Claude Code's Workflow tool bounds a script at 524 288)."""
MAX_BOUND_DIGITS = 40
"""Longest integer/decimal bound (digits) accepted for minimum/maximum."""
DIRECT_REPEAT = 1_000
"""Counts up to this are written ``x{m,n}``; larger ones in chunks (llama.cpp refuses > 2000)."""
