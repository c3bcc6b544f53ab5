"""Worker-side logic that needs no Airflow classes: environment checks and fingerprints, metric inputs,
run conditions, sync, checkpoints and retention planning. Imported only where tasks run, never at DAG
parse time (ruff TID253 bans it at module level elsewhere); from Airflow it uses only the provider's
exceptions, which derive from AirflowException.
"""
