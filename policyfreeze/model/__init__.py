"""``nn.Module`` or manifest → ``ModelTree``: the walk, wrappers, eval pins, manifests, ``--model``.

The only package that introspects torch modules. Imports only ``policyfreeze.errors``.
"""
