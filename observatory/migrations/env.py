"""Alembic's environment: observatory.schema hands it an open connection inside a locked transaction."""

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    version_table_schema=config.attributes["namespace"],  # PostgreSQL: the namespace's own schema
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
