"""The language's words, in one table.

The grammar (``grammar/policy.lark``) is checked against it by the tests;
error messages, suggestions, validation and ``fmt`` read it.
"""

from __future__ import annotations

#: Statement verbs: ``freeze``/``unfreeze`` act on parameters, ``eval``/``train`` on modules.
VERBS = ("freeze", "unfreeze", "eval", "train")
PARAMETER_VERBS = frozenset({"freeze", "unfreeze"})

#: Schedule units of ``at UNIT N { … }``, and the first N each accepts (phase 0 is the base statements).
UNITS = ("epoch", "step", "phase")
FIRST_STAGE = {"epoch": 0, "step": 0, "phase": 1}

#: Words that start a selector atom, and the other reserved words.
SELECTOR_WORDS = ("all", "match", "type", "children")
KEYWORDS = (*VERBS, *SELECTOR_WORDS, "except", "with", "at", *UNITS)

#: ``with`` options of ``unfreeze``, and what each means.
OPTION_KEYS = ("lr", "lr_scale", "weight_decay")

#: Flags a ``match /REGEX/FLAGS`` may carry.
REGEX_FLAGS = ("i",)

#: How messages name each terminal of the grammar.
TERMINAL_NAMES = {
    "VERB": f"a verb ({', '.join(VERBS)})",
    "GLOB": "a name or glob",
    "QUOTED_GLOB": "a quoted name",
    "ALL": "'all'",
    "MATCH": "'match'",
    "TYPE": "'type'",
    "CHILDREN": "'children'",
    "REGEX": "a /regex/",
    "INT": "an integer",
    "NUMBER": "a number",
    "OPTION_KEY": f"an option name ({', '.join(OPTION_KEYS)})",
    "UNIT": ", ".join(f"'{unit}'" for unit in UNITS[:-1]) + f" or '{UNITS[-1]}'",
    "_NL": "a new line",
    "SEMICOLON": "';'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "AMPERSAND": "'&'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "COLON": "':'",
    "EXCEPT": "'except'",
    "WITH": "'with'",
    "AT": "'at'",
    "$END": "the end of the file",
}

#: The keywords each terminal stands for: a misspelt word is compared with these.
TERMINAL_WORDS = {
    "VERB": VERBS,
    "UNIT": UNITS,
    "AT": ("at",),
    "EXCEPT": ("except",),
    "WITH": ("with",),
    "ALL": ("all",),
    "MATCH": ("match",),
    "TYPE": ("type",),
    "CHILDREN": ("children",),
}
