"""Data: reading parallel text, SentencePiece tokenization, batching. Knows nothing of the model."""
