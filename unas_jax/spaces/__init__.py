"""The search spaces: choices, phi layouts, genotypes (JSON), drawings and reference counts.

``darts`` (cells of input and op selectors), ``proxyless`` (MBConv blocks per
layer), ``nb201`` (NAS-Bench-201 cells, with ``nb201_tables`` for the benchmark's
accuracy and latency tables).
"""
