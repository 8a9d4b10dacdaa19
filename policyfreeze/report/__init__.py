"""What a plan means for people and machines: the diff report, diff, explain, cost, and their renderers.

Imports ``errors``, ``language``, ``model`` and ``engine``.
"""
