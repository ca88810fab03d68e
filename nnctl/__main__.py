from nnctl.cli.app import main

main()
