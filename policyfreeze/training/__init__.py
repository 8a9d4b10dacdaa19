"""Policies in a training loop: the ``Freezer`` and what it keeps in line with the model.

``freezer.py`` (the Freezer: stages, phases, resume), ``regroup.py`` (its
optimizer groups), ``schedulers.py`` (LR schedulers across added groups),
``state.py`` (the validated checkpoint state), ``structure.py`` (proof that
the model kept its structure), ``distributed.py`` (DDP, FSDP2, dynamo),
``plateau.py`` (the metric trigger of ``at phase`` stages) and
``optimizer.py`` (``check_optimizer``).

Imports ``errors``, ``language``, ``model``, ``engine`` and ``report``.
"""
