from iadbench.cli import main

main()
