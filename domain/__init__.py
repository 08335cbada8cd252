"""Pure business rules of review packs.

Nothing here imports Celery, SQLAlchemy, boto3 or the outer packages: every
function takes plain values and returns plain values, so the rules are tested
by calling them.
"""
