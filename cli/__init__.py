"""The `geoalign` command line: each module registers its subcommands; main.py assembles them."""
