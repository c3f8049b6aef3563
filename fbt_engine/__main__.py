from fbt_engine.cli import exit_process, main

exit_process(main(ends_process=True))
