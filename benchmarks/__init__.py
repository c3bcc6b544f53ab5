"""Reproducible benchmarks of airflow-provider-neptune against its emulator.

Run them all with ``python -m benchmarks [--quick] [--only NAME]``; each module also runs alone
(``python -m benchmarks.parse_cost --help``). This package imports nothing from the provider or
``neptune`` at import time, so the plain-client worker processes stay free of provider code.
"""
