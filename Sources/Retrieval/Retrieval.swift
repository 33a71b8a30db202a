// Retrieval module (work in progress).
