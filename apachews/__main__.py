from apachews.cli import main

main()
