"""``pipeline consolidate`` and ``pipeline admin --cluster orders`` as an operator runs
them: real processes, a real ledger, the session's PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from ledgerkit import new_ledger, reports
from pg_server import PostgresServer
from prometheus_client.parser import text_string_to_metric_families
from testkit import eventually

from pipeline.errors import EXIT_OPERATIONAL
from pipeline.ledger.models import to_stored
from pipeline.records import OrderStatus

BIG_ID = (1 << 64) - 5  # shown as the u64 the pipeline logs, not the stored int64


def _pipeline(*args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_CLUSTER_POSTGRES_URL"}
    if url is not None:
        env["PIPELINE_CLUSTER_POSTGRES_URL"] = url
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_consolidate_once_then_admin_prints_the_orders(tmp_path: Path,
                                                        postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("commands").render_as_string(hide_password=False)
    store = new_ledger(tmp_path / "a.db")
    store.apply(reports([BIG_ID, 2], status=OrderStatus.NEW, side=[1, -1]), {})
    store.apply(reports([2], side=-1, price=123.5), {})
    done = _pipeline("consolidate", "--host", "alpha", "--database", str(tmp_path / "a.db"),
                     "--once", cwd=tmp_path, url=url)
    assert done.returncode == 0, done.stderr
    assert '"event": "consolidate.shipped"' in done.stderr
    assert postgres_server.password not in done.stderr + done.stdout
    shown = _pipeline("admin", "--cluster", "orders", "--postgres", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.split()[:8] == ["host", "id", "client_order_id", "symbol", "side",
                                  "quantity", "limit_price", "status"]
    rows = {line.split()[2]: line.split() for line in lines}
    assert (rows[str(BIG_ID)][0], rows[str(BIG_ID)][7]) == ("alpha", "new")
    assert (rows["2"][4], rows["2"][7]) == ("sell", "filled")
    assert str(to_stored(BIG_ID)) not in shown.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--host", "Bad-Name"), "host name 'Bad-Name'"),
    (("--database", "missing.db"), "no ledger database"),
])
def test_consolidate_refuses_bad_input(tmp_path: Path, postgres_server: PostgresServer,
                                       args: tuple[str, ...], message: str) -> None:
    new_ledger(tmp_path / "a.db")
    options = {"--host": "alpha", "--database": str(tmp_path / "a.db")}
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    url = postgres_server.url("postgres").render_as_string(hide_password=False)
    done = _pipeline("consolidate", *[x for kv in options.items() for x in kv], "--once",
                     cwd=tmp_path, url=url)
    assert done.returncode == EXIT_OPERATIONAL
    assert message in done.stderr


def test_unreachable_postgres_is_refused_without_the_password(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    new_ledger(tmp_path / "a.db")
    secret = "s3cr3t-not-for-logs"
    url = f"postgresql://postgres:{secret}@127.0.0.1:{postgres_server.port}/postgres"
    done = _pipeline("consolidate", "--host", "alpha", "--database", str(tmp_path / "a.db"),
                     "--once", "--postgres", url, cwd=tmp_path)
    assert done.returncode == EXIT_OPERATIONAL
    assert "cannot read or reach PostgreSQL at postgresql+psycopg://postgres:***@" in done.stderr
    assert secret not in done.stderr + done.stdout
    shown = _pipeline("admin", "--cluster", "orders", cwd=tmp_path, url=url)
    assert shown.returncode == EXIT_OPERATIONAL
    assert secret not in shown.stderr + shown.stdout


def test_no_url_at_all_is_refused(tmp_path: Path) -> None:
    new_ledger(tmp_path / "a.db")
    done = _pipeline("consolidate", "--host", "alpha", "--database", str(tmp_path / "a.db"),
                     "--once", cwd=tmp_path)
    assert done.returncode == EXIT_OPERATIONAL
    assert "PIPELINE_CLUSTER_POSTGRES_URL" in done.stderr


def test_metrics_say_how_fresh_the_copy_is(tmp_path: Path,
                                           postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("metrics").render_as_string(hide_password=False)
    store = new_ledger(tmp_path / "a.db")
    store.apply(reports([7, 8], side=[1, -1]), {})
    port_file = tmp_path / "metrics.port"
    env = {**os.environ, "PIPELINE_CLUSTER_POSTGRES_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "consolidate", "--host", "alpha", "--database",
         str(tmp_path / "a.db"), "--interval-s", "0.2", "--metrics-port", "0",
         "--metrics-port-file", str(port_file)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        eventually(port_file.exists, timeout_s=60, message="the metrics endpoint")
        port = int(port_file.read_text())
        endpoint = f"http://127.0.0.1:{port}/metrics"

        def scraped(name: str, **labels: str) -> float | None:
            with urllib.request.urlopen(endpoint, timeout=5) as answer:
                text = answer.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == name and all(sample.labels.get(k) == v
                                                   for k, v in labels.items()):
                        return float(sample.value)
            return None

        eventually(lambda: scraped("pipeline_consolidator_rows_total", host="alpha",
                                   table="fills") == 2.0, timeout_s=60, message="2 fills")
        before = time.time()
        eventually(lambda: (scraped("pipeline_consolidator_last_success_timestamp_seconds",
                                    host="alpha") or 0.0) >= before,
                   timeout_s=30, message="a later successful pass")
        assert scraped("pipeline_consolidator_postgres_lost_total", host="alpha") == 0.0
        listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections()
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
