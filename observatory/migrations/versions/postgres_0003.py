"""PostgreSQL, migration 3: scale-out — what each job asks Ray for, and where each attempt ran or why it waits."""

from observatory.schema import execute_script

revision = "postgres_0003"
down_revision = "postgres_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without defaults: PostgreSQL adds them without rewriting the tables.
    execute_script("""
ALTER TABLE {ns}.jobs ADD COLUMN IF NOT EXISTS resources jsonb;
ALTER TABLE {ns}.job_attempts ADD COLUMN IF NOT EXISTS node text;
ALTER TABLE {ns}.job_attempts ADD COLUMN IF NOT EXISTS executor text;
ALTER TABLE {ns}.job_attempts ADD COLUMN IF NOT EXISTS waiting text;
""")


def downgrade() -> None:
    execute_script("""
ALTER TABLE {ns}.job_attempts DROP COLUMN IF EXISTS waiting;
ALTER TABLE {ns}.job_attempts DROP COLUMN IF EXISTS executor;
ALTER TABLE {ns}.job_attempts DROP COLUMN IF EXISTS node;
ALTER TABLE {ns}.jobs DROP COLUMN IF EXISTS resources;
""")
