"""Embedded bus, migration 1: messages and consumers, as 0.1 made them."""

from observatory.schema import execute_script

revision = "sqlite_bus_0001"
down_revision = None
branch_labels = ("sqlite_bus",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    queue          TEXT NOT NULL,
    body           BLOB NOT NULL,
    available_us   INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until_us INTEGER,
    deliveries     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, id);
CREATE INDEX IF NOT EXISTS messages_owner ON messages (lease_owner);
CREATE TABLE IF NOT EXISTS consumers (owner TEXT PRIMARY KEY, queue TEXT NOT NULL, seen_us INTEGER NOT NULL);
"""


def upgrade() -> None:
    execute_script(SCHEMA)  # IF NOT EXISTS: a database made before migrations is adopted as it is


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS consumers;
DROP TABLE IF EXISTS messages;
""")
