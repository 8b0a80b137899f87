"""What a run tells: its counts, the progress display (the only rich import), the summary, the
Prometheus textfile, logging."""
