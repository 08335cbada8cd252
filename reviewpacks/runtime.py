"""The pieces a process builds from its Settings, owned in one place.

A :class:`Runtime` holds one process's settings and lazily builds its database
engine, session factory and artifact store on first use.  Workers, beat, the CLI
and the producer client all take these from here, so there is one engine per
database URL in a process and one answer to "which settings does this process
run with".

``current()`` is the process's runtime from the environment; it is built on the
first call, never at import.  After a fork the child must not reuse the
parent's pooled sockets or its S3 client, so ``after_fork()`` drops both and the
child builds its own on first use.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reviewpacks.settings import Settings
from storage.artifacts import ArtifactStore, artifact_store_from_settings
from storage.db import create_engine_for, make_session_factory

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_session_factories: dict[str, sessionmaker[Session]] = {}
_current: Runtime | None = None


def engine_for(url: str) -> Engine:
    """This process's engine for ``url``, created on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_engine_for(url)
        return engine


def session_factory(url: str) -> sessionmaker[Session]:
    """This process's session factory for ``url``, bound to :func:`engine_for`'s engine."""
    engine = engine_for(url)
    with _lock:
        factory = _session_factories.get(url)
        if factory is None:
            factory = _session_factories[url] = make_session_factory(engine)
        return factory


def dispose_engines(*, close: bool = False) -> None:
    """Drop every pooled connection. ``close=False`` after a fork leaves the parent's sockets to the parent."""
    with _lock:
        engines = list(_engines.values())
    for engine in engines:
        engine.dispose(close=close)


class Runtime:
    """Settings plus the engine, sessions and artifact store built from them, each on first use."""

    def __init__(self, settings: Settings, *, store: ArtifactStore | None = None):
        self.settings = settings
        self._store = store

    @property
    def engine(self) -> Engine:
        return engine_for(self.settings.database_url)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.settings.database_url)

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            self._store = artifact_store_from_settings(self.settings)
        return self._store

    def forget_store(self) -> None:
        """Build the store again on next use (its HTTP connections must not cross a fork)."""
        self._store = None


def current() -> Runtime:
    """The process's runtime from the REVIEWPACKS_* environment, built on the first call."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
        return _current


def after_fork() -> None:
    """Called in a freshly forked child: open new connections instead of sharing the parent's."""
    dispose_engines(close=False)
    with _lock:
        runtime = _current
    if runtime is not None:
        runtime.forget_store()
