"""Worker-side logic that needs no Airflow: checkpoints and retention planning, environment checks
and fingerprints, metric inputs, run conditions. Imported only where tasks run, never at DAG parse time.
"""
