"""PostgreSQL (media_tool) to MongoDB (bravo-1) pipeline: one module per stage, a shared core."""
