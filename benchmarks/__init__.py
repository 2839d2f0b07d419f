"""`make bench` / `make bench-quick`: speed, sweep efficiency and latent quality, as printed tables."""
