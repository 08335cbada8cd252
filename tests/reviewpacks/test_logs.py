"""Structured logs: context bound once, logfmt or JSON, nothing shaped like a URL, every logger under reviewpacks."""

from __future__ import annotations

import ast
import io
import json
import logging

import pytest

from reviewpacks import logs
from tests.conftest import ROOT
from workers.logs import event


@pytest.fixture
def captured():
    """Lines as a host's own handler on the root logger would receive them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s|%(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_context_bound_once_is_on_every_line_of_the_unit_of_work_and_gone_after(captured):
    log = logs.get_logger("pipeline")
    with logs.task_context(pack_id=7):
        logs.bind(run_id=9, tenant_id=3, attempt=2)
        log.info("pack.generating")
        event(logging.getLogger("reviewpacks.recovery"), "run.requeued", attempts=2, skipped=None)
    log.info("prune.done", expired=1)

    generating, requeued, done = captured()
    assert generating.startswith("reviewpacks.pipeline|pack.generating pack_id=7 run_id=9 tenant_id=3 attempt=2 level=info ")
    assert requeued.startswith("reviewpacks.recovery|run.requeued pack_id=7 run_id=9 tenant_id=3 attempt=2 attempts=2 level=info ")
    assert "skipped" not in requeued
    assert done.startswith("reviewpacks.pipeline|prune.done expired=1 level=info ") and "pack_id" not in done


def test_logfmt_quotes_and_escapes_so_a_value_cannot_start_a_new_line(captured):
    logs.get_logger("pipeline").warning("pack.failed", error='Bad "thing"\nforged=line', empty="", flag=True)
    (line,) = captured()
    assert 'error="Bad \\"thing\\"\\nforged=line" empty="" flag=true level=warning' in line


def test_anything_shaped_like_a_url_is_replaced(captured):
    log = logs.get_logger("storage")
    log.warning("store.unreachable", detail="could not reach https://AKIA:secret@minio.internal:9000/bucket?X-Amz-Signature=abc now")
    logging.getLogger("reviewpacks.storage.artifacts").warning("connect to redis://:pw@cache:6379/0 failed")
    text = "\n".join(captured())
    assert "secret" not in text and "minio.internal" not in text and "X-Amz-Signature" not in text
    assert 'detail="could not reach <url> now"' in text


def test_an_exception_is_one_escaped_field_of_its_line(captured):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logs.get_logger("pipeline").exception("pack.crashed", reason_code="internal_error")
    (line,) = captured()
    assert "pack.crashed reason_code=internal_error exception=\"Traceback" in line
    assert "RuntimeError: boom\" level=error" in line


def test_the_worker_handler_renders_json_and_plain_records_alike():
    stream = io.StringIO()
    logger = logging.getLogger(logs.ROOT)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    try:
        logs.configure(log_format="json", level="info")
        (handler,) = [h for h in logger.handlers if isinstance(h, logs._Handler)]
        handler.setStream(stream)
        with logs.task_context(pack_id=5):
            logs.get_logger("pipeline").info("pack.ready", rows=12)
            logging.getLogger("reviewpacks.storage.artifacts").warning("stored under %s", "/srv/packs")
            logs.get_logger("pipeline").debug("pack.detail")
        ready, plain = (json.loads(line) for line in stream.getvalue().splitlines())
        assert ready["event"] == "pack.ready" and ready["pack_id"] == 5 and ready["rows"] == 12
        assert ready["level"] == "info" and ready["logger"] == "reviewpacks.pipeline" and ready["ts"].endswith("Z")
        assert plain == {**plain, "event": "stored under /srv/packs", "pack_id": 5, "level": "warning",
                         "logger": "reviewpacks.storage.artifacts"}
        # Configuring again replaces the handler instead of adding a second one.
        logs.configure(log_format="logfmt", level="warning")
        assert len([h for h in logger.handlers if isinstance(h, logs._Handler)]) == 1
    finally:
        logs.configure(log_format="logfmt", level="info")
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def _stdlib_logger_names() -> list[tuple[str, str]]:
    """(file, name) for every logger a production module creates by name, through logging or reviewpacks.logs."""
    found = []
    for path in ROOT.glob("**/*.py"):
        parts = path.relative_to(ROOT).parts
        if {".venv", "tests", "bench", "build"} & set(parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("getLogger", "get_logger"):
                if node.args and isinstance(node.args[0], ast.Constant):
                    found.append((str(path.relative_to(ROOT)), node.args[0].value))
    return found


def test_every_logger_lives_under_reviewpacks():
    names = _stdlib_logger_names()
    assert ("workers/pipeline.py", "reviewpacks.pipeline") in names
    # Alembic's own loggers are configured by alembic.ini when Alembic runs by hand.
    outside = [(path, name) for path, name in names if name.split(".")[0] != "reviewpacks" and "migrations" not in path]
    assert outside == []
