"""Run infrastructure: checkpoints (orbax), history and metric writers, plots, progress,
signals, NaN watch, the compilation cache, epath file writes and step lowering.
"""
