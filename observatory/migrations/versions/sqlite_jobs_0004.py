"""Embedded job store, migration 4: the sweeper's index holds only the jobs it looks at (see postgres_0004)."""

from observatory.schema import execute_script

revision = "sqlite_jobs_0004"
down_revision = "sqlite_jobs_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The predicate is written as the sweeper's query writes it: SQLite uses a partial index only then.
    execute_script("""
CREATE INDEX IF NOT EXISTS jobs_unswept_idx ON jobs (created_us)
    WHERE published = 0 AND status IN ('PENDING', 'CANCELLED');
DROP INDEX IF EXISTS jobs_unpublished_idx;
""")


def downgrade() -> None:
    execute_script("""
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON jobs (published, created_us);
DROP INDEX IF EXISTS jobs_unswept_idx;
""")
