"""Classification workers: the shared per-track job, and the Celery app and task around it."""
