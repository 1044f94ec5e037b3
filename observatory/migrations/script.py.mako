"""${message}"""

from observatory.schema import execute_script

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    execute_script("""
""")


def downgrade() -> None:
    execute_script("""
""")
