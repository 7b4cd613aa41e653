"""The read side: queries over read models, through the Redis cache."""
