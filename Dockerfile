# Airflow 3.3.2 (Python 3.11) with this provider installed from the repository, pinned by the
# project's tested constraints.txt. Used by docker-compose.yaml for every Airflow service and the
# Neptune emulator.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# The official image installs Python packages as the "airflow" user; keep to that.
USER airflow
WORKDIR /opt/airflow-provider-neptune
COPY --chown=airflow:root constraints.txt pyproject.toml README.md ./
COPY --chown=airflow:root airflow_provider_neptune ./airflow_provider_neptune

# Pin apache-airflow to the image's version so pip can never up- or downgrade Airflow itself, and
# take every other version from constraints.txt. numpy is what the example training DAG needs.
# PIP_CONSTRAINT also pins the build backend (hatchling) in pip's isolated build environment.
RUN PIP_CONSTRAINT=/opt/airflow-provider-neptune/constraints.txt \
    pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" numpy . \
 && python -c "import airflow_provider_neptune, sys; print('provider', airflow_provider_neptune.__version__, sys.version)"

# Owned by airflow so the named volumes mounted here (client queue, emulator data) are writable.
RUN mkdir -p /opt/airflow/neptune-data /opt/airflow/emulator-data
WORKDIR /opt/airflow
