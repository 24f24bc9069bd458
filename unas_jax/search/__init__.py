"""The architecture search: one loop, one step, a space adapter per search space.

``step`` is the compiled search step (the accuracy estimator on phi, the latency
estimator, the w update), ``loop`` runs it (data, checkpoints, evaluation,
genotypes), and ``darts``, ``proxyless``, ``nb201`` adapt each space to the loop
(supernet, phi layout, genotype, latency source). ``defaults`` and
``darts_configs`` hold the config blocks the ``configs/`` files build on.
"""
