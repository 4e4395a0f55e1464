"""The knowledge base: loading, chunking, embedding, vector store, calibration."""
