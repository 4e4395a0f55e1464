"""The knowledge base: loading, chunking, embedding, vector store, search, and the rejection
gate fitted over it. A leaf: nothing here imports the bot or the adapters."""
