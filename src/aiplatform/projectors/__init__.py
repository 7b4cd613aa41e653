"""Projectors: one per read model, each filling the tables of its `projections/<name>.sql`."""
