// Tokenization module (work in progress).
