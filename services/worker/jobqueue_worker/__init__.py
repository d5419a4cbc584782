"""Worker of atx-jobqueue."""
