"""Reading COPY's rows from libpq's buffer ends the copy exactly as psycopg's own read does."""

from __future__ import annotations

import os
import select
import socket
import time

import psycopg
import pytest

from storage import export

ROWS = "COPY (SELECT g, repeat('x', %s) FROM generate_series(1, %s) g) TO STDOUT WITH (FORMAT csv)"
# 2 MB that PostgreSQL sends with a pause every 100 kB, so that the reader waits for rows.
PAUSING = (
    "COPY (SELECT g, repeat('x', 100), CASE WHEN g % 1000 = 0 THEN pg_sleep(0.01) END "
    "FROM generate_series(1, 20000) g) TO STDOUT WITH (FORMAT csv)"
)


def _read(conn: psycopg.Connection, statement: str, params=None) -> list[bytes]:
    with conn.cursor() as cursor, cursor.copy(statement, params) as copy:
        return [bytes(row) for row in export._copied_rows(copy, conn)]


@pytest.fixture
def conn(pg_url):
    with psycopg.connect(pg_url.replace("+psycopg", "")) as connection:
        yield connection


@pytest.mark.parametrize(("width", "count"), [(1, 0), (1, 1), (10, 3), (100, 50_000), (20_000, 200)])
def test_every_row_arrives_once_in_order_and_the_connection_stays_usable(conn, width, count):
    with conn.cursor() as cursor, cursor.copy(ROWS, (width, count)) as copy:
        expected = [bytes(row) for row in copy]

    assert _read(conn, ROWS, (width, count)) == expected
    assert len(expected) == count
    # The copy's result was collected: the transaction goes on and takes the next statement.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("count", [10, 50_000])
def test_an_error_the_server_raises_mid_copy_is_psycopgs_own(conn, count):
    failing = f"COPY (SELECT 10 / (g - {count}) FROM generate_series(1, {count}) g) TO STDOUT"
    with pytest.raises(psycopg.errors.DivisionByZero):
        _read(conn, failing)
    # Checked before the next statement, whose short answer would never wake a wait for 64 KiB.
    assert _low_water(conn.pgconn.socket) == 1
    conn.rollback()
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_broken_connection_mid_copy_raises_an_operational_error(conn, pg_url):
    backend = conn.info.backend_pid
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        with pytest.raises(psycopg.OperationalError):
            with conn.cursor() as cursor, cursor.copy(ROWS, (1000, 1_000_000)) as copy:
                for i, _ in enumerate(export._copied_rows(copy, conn)):
                    if i == 10:
                        assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]


def _recorded_waits(monkeypatch) -> list[bool]:
    """What each of the reader's own waits answered (True: rows arrived, False: its time ran out)."""
    answers: list[bool] = []
    real = export._GatheredWaits.__call__

    def wait(self) -> bool:
        answers.append(real(self))
        return answers[-1]

    monkeypatch.setattr(export._GatheredWaits, "__call__", wait)
    return answers


def _low_water(fd: int) -> int:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


@pytest.mark.skipif(not hasattr(select, "poll"), reason="gathered waits need poll()")
def test_a_small_copy_is_read_as_it_arrives(conn, monkeypatch):
    # 300 kB, a small pack's findings, whose last 30 kB come after a pause: they end the wait
    # as they arrive, instead of waiting out the step for 64 KiB that never come.
    waits = _recorded_waits(monkeypatch)
    fd = conn.pgconn.socket
    seen = set()
    small = (
        "COPY (SELECT g, repeat('x', 300), CASE WHEN g = 900 THEN pg_sleep(0.05) END "
        "FROM generate_series(1, 1000) g) TO STDOUT WITH (FORMAT csv)"
    )
    with conn.cursor() as cursor, cursor.copy(small) as copy:
        for _row in export._copied_rows(copy, conn):
            seen.add(_low_water(fd))
    assert seen == {1}
    assert waits and waits[-1] is True


@pytest.mark.skipif(not hasattr(select, "poll"), reason="gathered waits need poll()")
def test_a_long_copy_wakes_the_reader_late_and_the_socket_wakes_early_again_after(conn, monkeypatch):
    monkeypatch.setattr(export, "_WAKE_LATER_AFTER", 1)  # as if this copy had already waited long
    fd = conn.pgconn.socket
    seen = []
    with conn.cursor() as cursor, cursor.copy(PAUSING) as copy:
        for row in export._copied_rows(copy, conn):
            seen.append(_low_water(fd))
            assert len(row) > 100
    assert seen[-1] == export._WAKE_AT
    assert _low_water(fd) == 1
    assert conn.execute("SELECT 1").fetchone() == (1,)


def _tcp_pair():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


@pytest.mark.skipif(not hasattr(select, "poll"), reason="gathered waits need poll()")
def test_after_many_waits_a_wait_ends_once_a_good_part_of_a_block_has_arrived_or_after_a_short_step():
    reader, sender = _tcp_pair()
    with reader, sender:
        with export._gathered_waits(reader.fileno()) as wait:
            # At first one piece, as PostgreSQL sends it, ends a wait.
            sender.sendall(b"x" * 8192)
            time.sleep(0.05)  # loopback delivers at once
            assert wait() is True
            assert _low_water(reader.fileno()) == 1
            # Then it no longer does: the wait ends after the step, and the reader takes what is there.
            wait.waits = export._WAKE_LATER_AFTER - 1
            started = time.monotonic()
            assert wait() is False
            assert time.monotonic() - started >= export._WAIT_MS / 1000 / 2
            assert _low_water(reader.fileno()) == export._WAKE_AT
            reader.recv(8192)
            sender.sendall(b"x" * export._WAKE_AT)
            time.sleep(0.05)
            assert wait() is True  # many pieces at once end it
        assert _low_water(reader.fileno()) == 1


@pytest.mark.skipif(not hasattr(select, "poll"), reason="gathered waits need poll()")
def test_a_reader_left_mid_copy_restores_the_socket(conn, monkeypatch):
    monkeypatch.setattr(export, "_WAKE_LATER_AFTER", 1)
    fd = conn.pgconn.socket
    with pytest.raises(LookupError):
        with conn.cursor() as cursor, cursor.copy(PAUSING) as copy:
            rows = export._copied_rows(copy, conn)
            # Up to the first pause: the reader has waited, and wakes late from then on.
            for _ in range(1_100):
                next(rows)
            assert _low_water(fd) == export._WAKE_AT
            rows.close()
            assert _low_water(fd) == 1
            raise LookupError
    conn.rollback()
    assert conn.execute("SELECT 1").fetchone() == (1,)


class _Buffered:
    """libpq's buffer as _copied_rows sees it: a queue of get_copy_data answers, some of which
    arrive only when the socket is read (consume_input)."""

    def __init__(self, answers, fd=-1):
        self.answers = list(answers)
        self.consumed = 0
        self.socket = fd

    def get_copy_data(self, async_):
        assert async_ == 1  # never blocks: waiting is psycopg's
        return self.answers.pop(0)

    def consume_input(self):
        self.consumed += 1


class _Copy:
    def __init__(self, reads):
        self.reads = list(reads)

    def read(self):
        return self.reads.pop(0)


def test_without_poll_psycopg_waits_and_may_read_the_end_itself(monkeypatch):
    # Rows from the buffer, then an empty buffer and nothing on the socket either: psycopg
    # waits and reads a row, then (on the next empty buffer) the end of the copy, which it
    # finishes itself.
    monkeypatch.delattr(select, "poll", raising=False)
    raw = type("Raw", (), {"pgconn": _Buffered([(1, b"a"), (0, b""), (0, b""), (1, b"c"), (0, b""), (0, b"")])})()
    copy = _Copy([b"b", b""])
    assert list(export._copied_rows(copy, raw)) == [b"a", b"b", b"c"]
    assert copy.reads == [] and raw.pgconn.answers == []
    assert raw.pgconn.consumed == 2


def test_rows_the_socket_already_holds_are_read_without_waiting(monkeypatch):
    # The buffer is empty, the socket is not: reading it gives the next row, and no wait is
    # entered, neither psycopg's nor the reader's own.
    waits = _recorded_waits(monkeypatch)
    left, right = socket.socketpair()
    with left, right:
        buffered = _Buffered([(0, b""), (1, b"a"), (1, b"b"), (0, b""), (1, b"c"), (1, b"d")], left.fileno())
        raw = type("Raw", (), {"pgconn": buffered})()
        copy = _Copy([b""])
        rows = export._copied_rows(copy, raw)
        assert [next(rows) for _ in range(4)] == [b"a", b"b", b"c", b"d"]
        assert copy.reads == [b""] and raw.pgconn.consumed == 2
        assert waits == []
