"""Media into embeddings and embeddings into answers: the embedder (every space of one analysis), the query's trials
against a gallery (matching) and a video's face track and voice (video)."""
