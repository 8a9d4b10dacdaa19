"""Selection, resolution (``Plan``, ``Decision``), optimizer groups as data, and the all-or-nothing commit.

Imports ``errors``, ``language`` and ``model``; never ``report``, ``training``, ``lint`` or ``cli``.
"""
