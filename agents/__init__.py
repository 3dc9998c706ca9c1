"""User agents (personas, memory, emotion, deciders) and item/creator agents."""
