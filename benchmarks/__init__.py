"""Throughput and latency benchmark: the observatory and Celery side by side (`python -m benchmarks.run`)."""
