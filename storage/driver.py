"""A statement the request path runs on every call, executed at the driver's cost.

A request answered by a live pack runs two statements (the scoped read and the reuse).
Through SQLAlchemy's execution each cost about twice the client CPU of its round trip:
the execution context, the result metadata built from psycopg's column descriptions, and
a processor call per column. With eight producers on two cores the requests queue for that
CPU, and it set the latency's tail.

:class:`DriverStatement` keeps the statement a Core construct, written once for every
dialect, and compiles it once per dialect. On PostgreSQL with psycopg it then runs on the
pooled driver connection and applies the same bind and result processors SQLAlchemy would.
A driver error goes to SQLAlchemy's own handler, so it arrives wrapped as usual and a broken
connection is invalidated with its pool as on any other statement.

Everything else goes through SQLAlchemy: another dialect or driver, a connection inside a
transaction (SQLAlchemy must know of the transaction it commits), and a connection with
execution listeners, such as a host's tracing on a shared engine, which must see the statement.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Select

# The listeners that observe a statement's execution; with any of them, SQLAlchemy runs it.
_EXECUTION_EVENTS = ("before_execute", "after_execute", "before_cursor_execute", "after_cursor_execute")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # The statement's own values (literals), bound and processed once.
    constants: dict[str, Any]
    # Per call: (name in the SQL, key in the caller's params, bind processor or None).
    params: tuple[tuple[str, str, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...]


class DriverStatement:
    """A Core statement that returns at most one row, which :meth:`first` gives by attribute."""

    def __init__(self, statement: Select):
        self.statement = statement
        self._row = namedtuple("_Row", statement.selected_columns.keys())  # type: ignore[misc]
        self._compiled: dict[Dialect, _Compiled] = {}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row for ``params``, or None."""
        dbapi_connection = conn.connection.dbapi_connection
        if (
            conn.dialect.driver != "psycopg"
            or not getattr(dbapi_connection, "autocommit", False)
            or any(getattr(conn.dispatch, name) for name in _EXECUTION_EVENTS)
        ):
            return conn.execute(self.statement, params).first()
        compiled = self._compile(conn.dialect)
        values = dict(compiled.constants)
        for name, key, process in compiled.params:
            values[name] = params[key] if process is None else process(params[key])
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, values)
            row = cursor.fetchone()
        except conn.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's handler wraps the error, runs the handle_error listeners and, when the
            # connection is gone, invalidates it and the pool's older connections.
            conn._handle_dbapi_exception(error, compiled.sql, values, cursor, None)
            raise
        finally:
            cursor.close()
        if row is None:
            return None
        return self._row._make([value if process is None else process(value) for value, process in zip(row, compiled.results)])

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            constants, per_call = {}, []
            for bind, name in compiled.bind_names.items():
                if bind.expanding:
                    # SQLAlchemy renders an expanding IN anew for each call; give each value a bind of its own.
                    raise ValueError(f"{name} is an expanding parameter, which a driver statement cannot run")
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if bind.required:
                    per_call.append((name, bind.key, process))
                else:
                    constants[name] = bind.effective_value if process is None else process(bind.effective_value)
            results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in self.statement.selected_columns)
            found = self._compiled[dialect] = _Compiled(compiled.string, constants, tuple(per_call), results)
        return found
