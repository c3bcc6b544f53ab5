"""The host name of a compose service run as a process: ``[core] hostname_callable`` of the runner.

In a container, Airflow's host name is the container's (``$HOSTNAME``). The compose runner starts
every service on one machine and gives each its own ``HOSTNAME``; this callable makes Airflow
record it (task instances, jobs, fingerprints), so workers stay apart as separate hosts would.
"""

from __future__ import annotations

import os
import socket


def service_hostname() -> str:
    """``$HOSTNAME`` when set (the runner sets it per service), else the machine's FQDN."""
    return os.environ.get("HOSTNAME") or socket.getfqdn()
