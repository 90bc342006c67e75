"""JSON Schema -> GBNF grammars for llama.cpp, exact where a grammar can be.

``schema_to_gbnf`` converts one schema into a whole grammar; ``GrammarBuilder``
composes several schemas and literal text into one grammar (tool calls);
``SchemaError`` names the keyword and JSON pointer of anything refused;
``enforced_schema`` is the schema a grammar enforces, and ``validator`` the
check of it that the proxy runs on every answer (one source of truth).
"""

from oaiproxy.grammar.charsets import gbnf_literal
from oaiproxy.grammar.converter import GrammarBuilder, SchemaError, check_schema, schema_to_gbnf
from oaiproxy.grammar.enforced import enforced_schema, validator
from oaiproxy.grammar.formats import FORMAT_CHECKER

__all__ = ["schema_to_gbnf", "GrammarBuilder", "SchemaError", "gbnf_literal", "check_schema", "enforced_schema",
           "validator", "FORMAT_CHECKER"]
