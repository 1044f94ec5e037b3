"""PostgreSQL, migration 4: the sweeper's index holds only the jobs it looks at.

The gateway marks its jobs published late (observatory.late_marks), and a mark skips jobs a processor has
already claimed, so most finished jobs stay unmarked: the index the sweeper walks now leaves out every job
that is not PENDING or CANCELLED, marked or not.
"""

from observatory.schema import execute_script

revision = "postgres_0004"
down_revision = "postgres_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Built in the migration's transaction, as migration 2's: on a large jobs table, writes wait for it.
    execute_script("""
CREATE INDEX IF NOT EXISTS jobs_unswept_idx ON {ns}.jobs (created_at)
    WHERE NOT published AND status IN ('PENDING', 'CANCELLED');
DROP INDEX IF EXISTS {ns}.jobs_unpublished_idx;
""")


def downgrade() -> None:
    execute_script("""
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON {ns}.jobs (created_at) WHERE NOT published;
DROP INDEX IF EXISTS {ns}.jobs_unswept_idx;
""")
