"""A Neptune-compatible server for development and tests (the unmodified neptune 1.x client talks to it).

Run it with `python -m airflow_provider_neptune.emulator`, or from Python with `NeptuneEmulator`.
"""

from airflow_provider_neptune.emulator.process import EmulatorStartError, NeptuneEmulator

__all__ = ["EmulatorStartError", "NeptuneEmulator"]
