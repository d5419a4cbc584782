"""HTTP API of atx-jobqueue."""
