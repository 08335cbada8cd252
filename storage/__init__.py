"""Persistence: models, migrations, queries and the artifact store."""
