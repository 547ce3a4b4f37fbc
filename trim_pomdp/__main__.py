from trim_pomdp.cli import main

main()
