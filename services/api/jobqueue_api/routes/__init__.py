"""One blueprint per concern: jobs, analysis, meta (docs), health, metrics."""
