"""The search objectives: training, validation and generalisation-gap losses, latency penalties
(``losses.py``) and UNAS's pairing penalty on DARTS cells (``pairing.py``); docs/design.md section 3."""
