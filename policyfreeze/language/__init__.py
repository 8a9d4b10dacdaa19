"""Text → validated ``Policy``: the grammar, parsing, validation, positioned errors and ``fmt``.

Torch-free. Imports only ``policyfreeze.errors`` (and lark, pydantic, RE2).
"""
