"""What a plan means for people and machines: the report, diff, explain, cost, and their renderers.

``report`` (text, table, JSON), ``render`` (Markdown, tree), ``html`` (a page, and Jupyter),
``diff``, ``explain``, ``cost``; ``sections`` (what trains, in a few rows), ``timeline`` (a
schedule's stages) and ``present`` (labels, numbers, names, tables: written once) serve them all.

Imports ``errors``, ``language``, ``model`` and ``engine``.
"""
