"""Reading decoded JSON bodies field by field: typed rules that name each bad field and describe
themselves as JSON Schema, so a body's validation and its published description are one declaration.

A leaf package: `edge` and `broadcaster_registry` both use it, and it imports neither.
"""
