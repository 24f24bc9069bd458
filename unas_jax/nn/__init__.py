"""The networks, as Flax NNX modules used functionally (``functional.split``/``apply``).

Supernets (one per search space: ``darts_supernet``, ``proxyless_supernet``,
``nb201_supernet``), the discrete networks the evaluation phase trains
(``darts_network``, ``proxyless_network``), their layers (``ops``, ``mbconv``,
``depthwise``) and the per-backend choices: ``kernels`` (CPU kernels with
hand-written backward passes only on the CPU backend, ``fast_grad``) and
``precision`` (compute dtype, rematerialisation).
"""
