import P2POSCLI

P2POSCLI.main(CommandLine.arguments)
