"""The `fedmarket bench` commands' code (as Prefect's benches/): each measures and returns rows of
figures; the command line prints them. `peers.py` runs in the peers' own virtual environment."""
