from fbt_engine.cli import main

raise SystemExit(main())
