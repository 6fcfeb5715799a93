"""Processes that run the pipeline: the Kafka consumer and the Celery workers."""
