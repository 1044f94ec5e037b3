"""Embedded API keys, migration 1: the key table as 0.1 made it."""

from observatory.schema import execute_script

revision = "sqlite_keys_0001"
down_revision = None
branch_labels = ("sqlite_keys",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL, digest TEXT NOT NULL,
    created_us INTEGER NOT NULL, expires_us INTEGER, last_used_us INTEGER, revoked_us INTEGER
);
"""


def upgrade() -> None:
    execute_script(SCHEMA)  # IF NOT EXISTS: a database made before migrations is adopted as it is


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS api_keys;
""")
