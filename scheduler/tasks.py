"""Maintenance tasks run by celery-beat on the `maintenance` queue."""
