"""odsync nightly: one Airflow task per pipeline, run by the real `odsync` binary.

How a task reads a run (README "Scheduling"):
  exit 0  the run committed (or found nothing new): its --json document is pushed to XCom
          (key "return_value") for downstream tasks (row counts, changes by kind, conflicts);
  exit 1  a failure the message explains: upstream refused or timed out, an incomplete fetch,
          a held lock, the publication-shift guard. Nothing was committed and the watermark did
          not move, so a retry is safe; the guard's stop is not retried (a person decides on
          `odsync run <pipeline> --accept-shift`) and fails the task at once;
  exit 2  a bug in odsync: not retried, fails the task at once.
After the runs, `odsync status` checks every pipeline's health (exit 3: a threshold crossed).

Settings (Airflow Variables, or environment variables of the same name):
  ODSYNC_BIN        path of the odsync binary            (default: "odsync" on PATH)
  ODSYNC_PIPELINES  comma-separated pipeline names       (default: "nhs_trusts")
  ODSYNC_PIPELINES_DIR, ODSYNC_WAREHOUSE, ODSYNC_ORD_BASE_URL, ODSYNC_FHIR_API_KEY ... are passed
  through from the worker's environment as they are.
  ODSYNC_SCHEDULE   cron expression                      (default: "30 2 * * *")
"""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models import Variable
from airflow.operators.python import PythonOperator


def setting(name: str, default: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    try:
        return Variable.get(name, default_var=default)
    except Exception:  # no metadata database (e.g. while parsing in CI)
        return default


ODSYNC = setting("ODSYNC_BIN", "odsync")
PIPELINES = [p.strip() for p in setting("ODSYNC_PIPELINES", "nhs_trusts").split(",") if p.strip()]
SCHEDULE = setting("ODSYNC_SCHEDULE", "30 2 * * *")


def odsync(*args: str) -> tuple[int, dict | list | None, str]:
    """Runs odsync with --json; returns (exit code, parsed stdout, stderr)."""
    proc = subprocess.run([ODSYNC, *args, "--json"], capture_output=True, text=True)
    try:
        document = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        document = None
    return proc.returncode, document, proc.stderr


def run_pipeline(pipeline: str, **_context) -> dict:
    code, summary, stderr = odsync("run", pipeline)
    if code == 0:
        return summary  # pushed to XCom
    message = (summary or {}).get("error") or stderr.strip() or f"odsync exited {code}"
    if code == 2 or (summary or {}).get("stage") == "shift guard":
        raise AirflowFailException(message)  # no retry: a bug, or a person must decide
    raise AirflowException(message)  # exit 1: nothing committed, a retry is safe


def check_status(**_context) -> list:
    code, report, stderr = odsync("status")
    if code == 3:
        problems = [f"{p['pipeline']}: {x}" for p in report or [] for x in p.get("problems", [])]
        raise AirflowFailException("unhealthy pipelines:\n" + "\n".join(problems))
    if code != 0:
        raise AirflowException(stderr.strip() or f"odsync status exited {code}")
    return report


with DAG(
    dag_id="odsync_nightly",
    description="odsync: fetch ODS, snapshot, diff, merge into the trust table",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": True,
        # Alerting: set `email` (and SMTP) or an `on_failure_callback` for your channel.
        "email_on_failure": bool(os.environ.get("ODSYNC_ALERT_EMAIL")),
        "email": [os.environ["ODSYNC_ALERT_EMAIL"]] if os.environ.get("ODSYNC_ALERT_EMAIL") else [],
    },
    tags=["odsync", "ods"],
) as dag:
    status = PythonOperator(task_id="status", python_callable=check_status, retries=0)
    for name in PIPELINES:
        PythonOperator(
            task_id=f"run_{name}",
            python_callable=run_pipeline,
            op_kwargs={"pipeline": name},
            # One writer per pipeline: odsync takes a lock anyway; this keeps Airflow honest.
            max_active_tis_per_dag=1,
        ) >> status
