"""Darkroom workers: Celery tasks, the job runner, image conversion and the torch effects."""
