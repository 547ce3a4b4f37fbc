"""``python -m trim_pomdp``: the ``trim-pomdp`` command line."""

from trim_pomdp.cli import main

main(prog_name="trim-pomdp")
