"""Embedded job store, migration 3: scale-out — what each job asks Ray for, and where each attempt ran or why
it waits."""

from observatory.schema import execute_script

revision = "sqlite_jobs_0003"
down_revision = "sqlite_jobs_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
ALTER TABLE jobs ADD COLUMN resources TEXT;
ALTER TABLE job_attempts ADD COLUMN node TEXT;
ALTER TABLE job_attempts ADD COLUMN executor TEXT;
ALTER TABLE job_attempts ADD COLUMN waiting TEXT;
""")


def downgrade() -> None:
    execute_script("""
ALTER TABLE job_attempts DROP COLUMN waiting;
ALTER TABLE job_attempts DROP COLUMN executor;
ALTER TABLE job_attempts DROP COLUMN node;
ALTER TABLE jobs DROP COLUMN resources;
""")
