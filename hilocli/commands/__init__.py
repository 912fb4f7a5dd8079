"""One module per subcommand; each defines a Typer command function registered in hilocli.cli."""
