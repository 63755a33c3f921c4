"""Two replicas behind one port, as deploy/ describes: two real app.py processes sharing one
Chroma server (``chroma run``), one index folder and one PostgreSQL feedback database, behind
Debian's nginx running the shipped site (deploy/nginx/assistant.conf, ports rewritten).

nginx writes which replica answered each request (``$upstream_addr``: two addresses when it
tried one and then the other) to an access log the tests read.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from rel_helpers import CCG_FACT, CCG_QUESTION, Tally, cli_env, copy_corpus, run_cli

from devtools.servers import (
    AppProcess,
    ChromaProcess,
    ServerStartError,
    free_port,
    running_nginx,
    start_app,
    stop_process,
    wait_for_health,
)

pytestmark = pytest.mark.slow

NEW_DOC = (
    "Quokka panel\n\nThe quokka liaison panel for commissioning meets on the ninth Thursday.\n"
)
LOAD_REQUESTS = 30
LOAD_THREADS = 4


@dataclass
class Cluster:
    proxy: str  # nginx's base URL
    replicas: list[AppProcess]
    env: dict[str, str]  # the indexer's environment (the replicas share all but the data dir)
    corpus: Path
    feedback_url: str
    access_log: Path
    folder: Path  # logs and data folders

    def replica_env(self, n: int) -> dict[str, str]:
        """Replica ``n``'s environment: the indexer's, with a data folder of its own."""
        return _replica_env(self.env, self.folder, n)

    def upstreams_of(self, path: str) -> list[str]:
        """``$upstream_addr`` of each logged request for ``path``, oldest first."""
        lines = self.access_log.read_text(encoding="utf-8").splitlines()
        return [line.split(" ", 2)[2] for line in lines if line.split(" ", 2)[0] == path]


def _replica_env(env: dict[str, str], folder: Path, n: int) -> dict[str, str]:
    return {**env, "ASSISTANT_DATA_DIR": str(folder / f"data-{n}")}


def _start_replicas(env: dict[str, str], tmp: Path) -> list[AppProcess]:
    apps = [start_app(_replica_env(env, tmp, n), tmp / f"replica-{n}.log") for n in (1, 2)]
    try:
        for app in apps:  # they load side by side
            wait_for_health(app)
    except ServerStartError as err:
        for app in apps:
            stop_process(app.process)
        pytest.fail(str(err))
    return apps


@pytest.fixture(scope="module")
def cluster(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    chroma = ChromaProcess(tmp / "chroma-db", free_port())
    try:
        host, port = chroma.start()
    except ServerStartError as err:
        pytest.fail(str(err))
    corpus = copy_corpus(tmp / "corpus")
    env = cli_env(corpus, tmp / "index", tmp / "data-indexer", chroma_host=host,
                  chroma_port=str(port), feedback_url=postgres_url,
                  trusted_proxies="127.0.0.1")  # fmt: skip
    built = run_cli(["index"], env)
    assert built.returncode == 0, built.stderr
    apps = _start_replicas(env, tmp)
    try:
        upstreams = [app.url.removeprefix("http://") for app in apps]
        with running_nginx(upstreams, tmp / "nginx") as proxy:
            log = tmp / "nginx" / "upstream.log"
            yield Cluster(proxy, apps, env, corpus, postgres_url, log, tmp)
    except ServerStartError as err:
        pytest.fail(str(err))
    finally:
        for app in apps:
            stop_process(app.process)
        chroma.stop()


def _metric(base: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` in ``base``'s /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).raise_for_status().text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _ask(base: str, question: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{base}/api/ask", json={"question": question}, timeout=timeout)


def test_both_replicas_answer_through_one_port(cluster: Cluster, tally: Tally) -> None:
    answers = [_ask(cluster.proxy, CCG_QUESTION) for _ in range(8)]
    tally.add(requests_sent=len(answers))
    assert [r.status_code for r in answers] == [200] * 8
    assert all(CCG_FACT in r.json()["answer"] and r.json()["citations"] for r in answers)
    served_by = set(cluster.upstreams_of("/api/ask"))
    assert served_by == {app.url.removeprefix("http://") for app in cluster.replicas}
    for app in cluster.replicas:  # each replica's own /metrics counts what it answered
        answered = _metric(app.url, "assistant_answers_total", outcome="answered")
        assert answered == cluster.upstreams_of("/api/ask").count(app.url.removeprefix("http://"))
    page = httpx.get(f"{cluster.proxy}/", timeout=30)  # the chat page, through the proxy too
    assert page.status_code == 200
    assert "gradio" in page.text.lower()
    # Prometheus scrapes each replica itself; the balancer does not hand /metrics out
    assert httpx.get(f"{cluster.proxy}/metrics", timeout=10).status_code == 404


def _feedback_rows(url: str, marker: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM feedback WHERE question LIKE :m")
            return int(conn.execute(query, {"m": f"%{marker}%"}).scalar_one())
    finally:
        engine.dispose()


def test_feedback_from_both_replicas_lands_in_one_database(cluster: Cluster, tally: Tally) -> None:
    marker = uuid.uuid4().hex[:12]
    for app in cluster.replicas:
        rating = {
            "question": f"Who commissions dentistry? ({marker})",
            "answer": "NHS England commissions primary dental care.",
            "rating": 1,
        }
        response = httpx.post(f"{app.url}/api/feedback", json=rating, timeout=30)
        assert response.status_code == 200, response.text
    tally.add(requests_sent=len(cluster.replicas))
    assert _feedback_rows(cluster.feedback_url, marker) == 2


def test_an_index_run_is_served_by_both_replicas_without_a_restart(
    cluster: Cluster, tally: Tally
) -> None:
    (cluster.corpus / "quokka.txt").write_text(NEW_DOC, encoding="utf-8")
    built = run_cli(["index"], cluster.env)
    assert built.returncode == 0, built.stderr
    for app in cluster.replicas:
        answer = _ask(app.url, "When does the quokka liaison panel meet?")
        tally.add(requests_sent=1)
        assert answer.status_code == 200
        assert "ninth Thursday" in answer.json()["answer"]
        assert app.process.poll() is None  # the same process: no restart


def _under_load(cluster: Cluster, when_a_quarter_done: Callable[[], None]) -> list[int]:
    """LOAD_REQUESTS asks through the proxy from LOAD_THREADS clients; ``when_a_quarter_done``
    runs once a quarter of them have answered. Returns each one's status."""
    done: list[int] = []

    def one(_: int) -> int:
        status = _ask(cluster.proxy, CCG_QUESTION).status_code
        done.append(status)
        return status

    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        futures = [pool.submit(one, i) for i in range(LOAD_REQUESTS)]
        deadline = time.monotonic() + 120
        while len(done) < LOAD_REQUESTS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        when_a_quarter_done()
        return [f.result() for f in futures]


def test_a_rolling_restart_loses_no_request(cluster: Cluster, tally: Tally) -> None:
    """A replica stopped as systemd stops it (SIGTERM) under load finishes what it has, exits
    cleanly, and nginx sends the rest to the other; started again on its port, it answers."""
    first = cluster.replicas[0]
    statuses = _under_load(cluster, lambda: first.process.send_signal(signal.SIGTERM))
    tally.add(requests_sent=len(statuses), errors=sum(s != 200 for s in statuses))
    assert statuses == [200] * LOAD_REQUESTS
    # a clean stop: uvicorn finishes its requests and lifespan, then re-raises the SIGTERM it
    # caught (uvicorn >= 0.29), which systemd counts as a clean exit; a crash would be another code
    assert first.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Traceback" not in first.log_tail()
    port = int(first.url.rsplit(":", 1)[1])
    again = start_app(cluster.replica_env(1), cluster.folder / "replica-1-again.log", port=port)
    cluster.replicas[0] = again
    try:
        wait_for_health(again)
    except ServerStartError as err:
        pytest.fail(str(err))
    answer = _ask(again.url, CCG_QUESTION)
    tally.add(requests_sent=1)
    assert answer.status_code == 200
    assert CCG_FACT in answer.json()["answer"]


def _until_both_in_rotation(cluster: Cluster) -> None:
    """Ask through the proxy until both replicas have answered since now: nginx keeps one that
    failed out of the rotation for ``fail_timeout`` (10 s)."""
    before = len(cluster.upstreams_of("/api/ask"))
    wanted = {app.url.removeprefix("http://") for app in cluster.replicas}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert _ask(cluster.proxy, CCG_QUESTION).status_code == 200
        if wanted <= set(cluster.upstreams_of("/api/ask")[before:]):
            return
        time.sleep(0.5)
    pytest.fail(f"nginx did not send questions to both replicas within 30 s: {wanted}")


def test_killing_a_replica_under_load_loses_no_request(cluster: Cluster, tally: Tally) -> None:
    """Asks through the proxy from four clients; once a quarter have answered, one replica is
    killed (SIGKILL). nginx retries what the dead replica had (asking only reads) on the other,
    and takes it out of the rotation: every request is answered."""
    victim = cluster.replicas[1]
    _until_both_in_rotation(cluster)  # a replica restarted by the test before may still be out
    before = len(cluster.upstreams_of("/api/ask"))
    statuses = _under_load(cluster, lambda: os.kill(victim.process.pid, signal.SIGKILL))
    victim.process.wait(timeout=10)
    tally.add(requests_sent=len(statuses), errors=sum(s != 200 for s in statuses))
    assert statuses == [200] * LOAD_REQUESTS
    tally.add(kills_survived=1)
    served = cluster.upstreams_of("/api/ask")[before:]
    dead = victim.url.removeprefix("http://")
    assert any(s == dead for s in served)  # it was answering before it was killed
    assert served[-1] != dead  # and the last ones went to the survivor
