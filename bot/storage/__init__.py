"""SQLAlchemy models, the database handle and narrow repository functions."""
