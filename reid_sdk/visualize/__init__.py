"""Pictures for people: search results, track matches and rank lists, built from one captioned tile."""
