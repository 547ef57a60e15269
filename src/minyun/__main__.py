from minyun.cli import main

main()
