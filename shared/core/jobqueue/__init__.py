"""atx-jobqueue core: settings, Redis keys, the job model and the queue, shared by API and worker."""
