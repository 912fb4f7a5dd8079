from hilocli.cli import main

main()
