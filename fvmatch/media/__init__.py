"""Loading and preprocessing of the two media types: faces (images) and voices (audio)."""
