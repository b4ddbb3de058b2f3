"""align4d core."""
