"""Dataset layouts (Market-1501, DukeMTMC-reID, MARS, DukeMTMC-VideoReID, folders) and the synthetic generator."""
