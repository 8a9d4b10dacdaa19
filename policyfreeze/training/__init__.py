"""Policies in a training loop: the ``Freezer``, its optimizer regrouping, and ``check_optimizer``.

Imports ``errors``, ``language``, ``model``, ``engine`` and ``report``.
"""
